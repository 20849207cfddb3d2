// Downloads a GPT-2 checkpoint from the Hugging Face Hub (or an HF_ENDPOINT mirror) through @huggingface/hub:
// pinned to one commit, every file checked against the size and hash the Hub lists, resumable.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  CheckpointError,
  CONFIG_FILE,
  configFromHf,
  WEIGHTS_FILE,
  WEIGHTS_INDEX_FILE,
} from './checkpoint.js';

/** The public Hub; HF_ENDPOINT points elsewhere (a mirror, or the tests' stand-in). */
export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';
/** Seconds without a byte before a request counts as stalled (HF_HUB_DOWNLOAD_TIMEOUT overrides). */
export const DEFAULT_STALL_TIMEOUT_S = 30;

/** Files of a model repository that make up a checkpoint we read; everything else is left on the Hub. */
const OPTIONAL_FILES = [
  'generation_config.json',
  'tokenizer.json',
  'vocab.json',
  'merges.txt',
  'tokenizer_config.json',
  'special_tokens_map.json',
];

/** What the repository holds instead of safetensors, for the refusal. */
const OTHER_WEIGHTS = [
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
  'tf_model.h5',
  'flax_model.msgpack',
];

export interface HubRepoRef {
  /** `ORG/NAME` or a bare `NAME` (the Hub's legacy models: `gpt2`, `distilgpt2`). */
  repo: string;
  /** Branch, tag or commit; null for the default branch. */
  revision: string | null;
}

export interface HubDownloadOptions {
  endpoint: string;
  /** HF_TOKEN, or null for anonymous access. */
  token: string | null;
  stallTimeoutMs: number;
  log: (line: string) => void;
}

export interface HubDownload {
  /** A local Hugging Face model directory holding the downloaded files. */
  dir: string;
  /** The commit every file was downloaded from. */
  commit: string;
  /** Downloaded file → its sha256 (hex). */
  files: Record<string, string>;
}

/** A download problem, in one line that names the repository and, where it applies, the file. */
export class HubDownloadError extends Error {
  override name = 'HubDownloadError';
  /** True when a partial file was kept for the next run to resume. */
  constructor(
    message: string,
    readonly resumable = false,
  ) {
    super(message);
  }
}

/** The repository and revision of `hf:ORG/NAME[@REVISION]`, or a reason it is not one. */
export function parseHubSource(spec: string): HubRepoRef {
  const body = spec.slice('hf:'.length);
  const at = body.indexOf('@');
  const repo = at < 0 ? body : body.slice(0, at);
  const revision = at < 0 ? null : body.slice(at + 1);
  // The Hub's own rule: optional namespace, then a name of letters, digits, '-', '_' and '.'.
  if (
    !/^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}\/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$/.test(repo) ||
    repo.includes('..')
  )
    throw new HubDownloadError(
      `${spec}: not a Hub repository (hf:ORG/NAME or hf:NAME, optionally @REVISION)`,
    );
  if (revision !== null && !/^[A-Za-z0-9][A-Za-z0-9_./-]{0,199}$/.test(revision))
    throw new HubDownloadError(
      `${spec}: revision ${JSON.stringify(revision)} is not a branch, tag or commit`,
    );
  return { repo, revision };
}

interface ListedFile {
  size: number;
  /** sha256 of the content for LFS files (what the Hub's LFS pointer and X-Linked-Etag carry). */
  sha256: string | null;
  /** git blob id of small files (what their ETag carries). */
  gitOid: string | null;
}

/**
 * Downloads config.json, the safetensors weights (one file or an index and its shards), the tokenizer and
 * generation files of `ref` into `stagingRoot/<repo>@<commit>`. A file already there and intact is kept;
 * a partial one (`.part`) is resumed with a range request, or restarted when the server ignores the range.
 * The architecture is checked from config.json before any weights are fetched.
 */
export async function downloadHubModel(
  ref: HubRepoRef,
  stagingRoot: string,
  o: HubDownloadOptions,
): Promise<HubDownload> {
  const hub = await import('@huggingface/hub');
  const what = `hf:${ref.repo}`;
  const token = o.token ?? undefined;
  if (token !== undefined && !token.startsWith('hf_'))
    throw new HubDownloadError(
      `${what}: HF_TOKEN is not a Hugging Face access token (they start with "hf_")`,
    );
  const transport = new Transport(o.stallTimeoutMs);
  const common = { hubUrl: o.endpoint, accessToken: token, fetch: transport.fetch };
  // Messages name the commit once it is known.
  let label = what;
  const explain = (err: unknown, file?: string) =>
    new HubDownloadError(
      describeFailure(err, { what: label, file, endpoint: o.endpoint, token, transport }),
      file !== undefined && (err instanceof Stalled || transport.lastError instanceof Stalled),
    );

  let commit: string;
  try {
    const info = await hub.modelInfo({
      ...common,
      name: ref.repo,
      revision: ref.revision ?? 'main',
      additionalFields: ['sha', 'config'],
    });
    commit = String(info.sha ?? '');
    const summary = info.config as { model_type?: unknown; architectures?: unknown } | undefined;
    if (summary?.model_type !== undefined && summary.model_type !== 'gpt2') {
      const archs = Array.isArray(summary.architectures) ? summary.architectures.join(', ') : 'unknown';
      throw new HubDownloadError(
        `${what}: architecture ${archs} (model_type ${JSON.stringify(summary.model_type)}) is not GPT-2: only GPT2LMHeadModel checkpoints are supported`,
      );
    }
  } catch (err) {
    throw err instanceof HubDownloadError ? err : explain(err);
  }
  if (!/^[0-9a-f]{40}$/.test(commit))
    throw new HubDownloadError(`${what}: the Hub did not say which commit ${ref.revision ?? 'main'} is`);
  o.log(`${what}: revision ${ref.revision ?? 'main'} is commit ${commit}`);
  label = `${what}@${commit}`;

  const listing = new Map<string, ListedFile>();
  try {
    for await (const entry of hub.listFiles({ ...common, repo: ref.repo, revision: commit })) {
      if (entry.type !== 'file') continue;
      listing.set(entry.path, {
        size: entry.lfs?.size ?? entry.size,
        sha256: entry.lfs?.oid ?? null,
        gitOid: entry.lfs ? null : (entry.oid ?? null),
      });
    }
  } catch (err) {
    throw explain(err);
  }

  const dir = path.join(stagingRoot, `${ref.repo.replace('/', '--')}@${commit}`);
  await mkdir(dir, { recursive: true });
  const files: Record<string, string> = {};
  const fetchFile = async (name: string) => {
    const listed = listing.get(name);
    if (!listed) throw new HubDownloadError(`${what}@${commit}: has no ${name}`);
    try {
      files[name] = await downloadVerified(
        hub,
        { ...common, repo: ref.repo, revision: commit },
        name,
        listed,
        dir,
        o,
        transport,
      );
    } catch (err) {
      throw err instanceof HubDownloadError ? err : explain(err, name);
    }
  };

  // config.json first: a checkpoint of another architecture is refused before its weights are fetched.
  await fetchFile(CONFIG_FILE);
  try {
    const text = await readFile(path.join(dir, CONFIG_FILE), 'utf8');
    configFromHf(JSON.parse(text), `${what}@${commit}/${CONFIG_FILE}`);
  } catch (err) {
    if (err instanceof CheckpointError) throw new HubDownloadError(err.message);
    throw new HubDownloadError(`${what}@${commit}/${CONFIG_FILE}: invalid JSON (${(err as Error).message})`);
  }

  const weights: string[] = [];
  if (listing.has(WEIGHTS_FILE)) weights.push(WEIGHTS_FILE);
  else if (listing.has(WEIGHTS_INDEX_FILE)) {
    await fetchFile(WEIGHTS_INDEX_FILE);
    weights.push(...(await shardsOf(path.join(dir, WEIGHTS_INDEX_FILE), `${what}@${commit}`)));
  } else {
    const other = OTHER_WEIGHTS.filter((f) => listing.has(f));
    throw new HubDownloadError(
      other.length > 0
        ? `${what}@${commit}: holds ${other.join(', ')} but no ${WEIGHTS_FILE}; only safetensors weights are read`
        : `${what}@${commit}: has no ${WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}`,
    );
  }
  for (const name of weights) await fetchFile(name);
  for (const name of OPTIONAL_FILES) if (listing.has(name)) await fetchFile(name);
  return { dir, commit, files };
}

/** The shard files a downloaded index names (plain .safetensors names; checked again at load). */
async function shardsOf(indexFile: string, where: string): Promise<string[]> {
  let map: unknown;
  try {
    map = JSON.parse(await readFile(indexFile, 'utf8')).weight_map;
  } catch (err) {
    throw new HubDownloadError(`${where}/${WEIGHTS_INDEX_FILE}: invalid JSON (${(err as Error).message})`);
  }
  if (map === null || typeof map !== 'object' || Array.isArray(map))
    throw new HubDownloadError(`${where}/${WEIGHTS_INDEX_FILE}: "weight_map" must be an object`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const s of shards) {
    if (typeof s !== 'string' || s !== path.basename(s) || !s.endsWith('.safetensors') || s.startsWith('.'))
      throw new HubDownloadError(
        `${where}/${WEIGHTS_INDEX_FILE}: shard ${JSON.stringify(s)} is not a plain .safetensors file name`,
      );
  }
  return (shards as string[]).sort();
}

type HubModule = typeof import('@huggingface/hub');
type FileParams = {
  repo: string;
  revision: string;
  hubUrl: string;
  accessToken?: string;
  fetch: typeof fetch;
};

/**
 * One file into `dir`: kept if already there and intact; else downloaded into NAME.part (resumed from its
 * length when one is left from an earlier run), checked against the listed size and hash, then renamed.
 * Returns the file's sha256.
 */
async function downloadVerified(
  hub: HubModule,
  params: FileParams,
  name: string,
  listed: ListedFile,
  dir: string,
  o: HubDownloadOptions,
  transport: Transport,
): Promise<string> {
  const where = `hf:${params.repo}@${params.revision}/${name}`;
  const final = path.join(dir, name);
  const part = `${final}.part`;
  const done = await stat(final).catch(() => null);
  if (done) {
    const digest = await hashFile(final, listed);
    if (done.size === listed.size && matches(digest, listed)) return digest.sha256;
    await rm(final, { force: true });
  }
  let offset = (await stat(part).catch(() => null))?.size ?? 0;
  if (offset > listed.size) {
    await rm(part, { force: true });
    offset = 0;
  }
  const started = performance.now();
  o.log(
    offset > 0
      ? `downloading ${name}: resuming at ${mb(offset)} of ${mb(listed.size)}`
      : `downloading ${name} (${mb(listed.size)})`,
  );
  const blob = await hub.downloadFile({ ...params, path: name, xet: false });
  if (!blob) throw new HubDownloadError(`${where}: not found (404) although the Hub lists it`);
  if (blob.size !== listed.size)
    throw new HubDownloadError(
      `${where}: the server offers ${blob.size} bytes, the Hub's listing says ${listed.size}`,
    );

  // Hashes cover the whole file: what an earlier run left is hashed first.
  let hashes = newHashes(listed);
  if (offset > 0) await hashInto(hashes, part);
  let restarted = false;
  for (;;) {
    try {
      transport.lastError = null;
      const stream = offset > 0 ? blob.slice(offset).stream() : blob.stream();
      await appendStream(stream, part, offset, hashes, listed.size, transport);
      break;
    } catch (err) {
      if (err instanceof RangeIgnored && !restarted) {
        // The server sent the whole file to a range request: start again from the first byte.
        restarted = true;
        transport.lastError = null;
        o.log(`${name}: the server does not resume downloads; starting again`);
        offset = 0;
        hashes = newHashes(listed);
        await rm(part, { force: true });
        continue;
      }
      if (err instanceof HubDownloadError) throw err;
      if (err instanceof Stalled || err instanceof HttpStatus)
        throw new HubDownloadError(
          describeFailure(err, {
            what: `hf:${params.repo}@${params.revision}`,
            file: name,
            endpoint: o.endpoint,
            token: params.accessToken,
            transport,
          }),
          err instanceof Stalled,
        );
      const got = (await stat(part).catch(() => null))?.size ?? 0;
      throw new HubDownloadError(
        `${where}: download ended after ${got} of ${listed.size} bytes (${oneLine(err instanceof Error ? err.message : String(err))}); the partial file is kept and the next run resumes it`,
        true,
      );
    }
  }
  const got = (await stat(part)).size;
  if (got !== listed.size) {
    throw new HubDownloadError(
      `${where}: download ended after ${got} of ${listed.size} bytes (connection closed early); the partial file is kept and the next run resumes it`,
      true,
    );
  }
  const digest = finish(hashes);
  if (!matches(digest, listed)) {
    await rm(part, { force: true });
    const expected = listed.sha256 ?? listed.gitOid;
    const actual = listed.sha256 ? digest.sha256 : digest.gitOid;
    throw new HubDownloadError(
      `${where}: content does not match the Hub's ${listed.sha256 ? 'sha256' : 'git blob id'} (got ${actual}, expected ${expected}); the download was discarded`,
    );
  }
  await rename(part, final);
  const seconds = (performance.now() - started) / 1000;
  o.log(
    `downloaded ${name}: ${mb(listed.size)} in ${seconds.toFixed(1)} s, ${listed.sha256 ? 'sha256' : 'git blob id'} verified`,
  );
  return digest.sha256;
}

interface Hashes {
  sha256: Hash;
  /** git's blob id: sha1 of "blob <size>\0" and the content (small files are listed by it). */
  git: Hash | null;
}

function newHashes(listed: ListedFile): Hashes {
  const git = listed.gitOid ? createHash('sha1').update(`blob ${listed.size}\0`) : null;
  return { sha256: createHash('sha256'), git };
}

function finish(h: Hashes): { sha256: string; gitOid: string | null } {
  return { sha256: h.sha256.digest('hex'), gitOid: h.git ? h.git.digest('hex') : null };
}

function matches(d: { sha256: string; gitOid: string | null }, listed: ListedFile): boolean {
  if (listed.sha256) return d.sha256 === listed.sha256;
  if (listed.gitOid) return d.gitOid === listed.gitOid;
  return false;
}

async function hashInto(h: Hashes, file: string): Promise<void> {
  for await (const chunk of createReadStream(file)) {
    h.sha256.update(chunk as Buffer);
    h.git?.update(chunk as Buffer);
  }
}

async function hashFile(
  file: string,
  listed: ListedFile,
): Promise<{ sha256: string; gitOid: string | null }> {
  const size = (await stat(file)).size;
  const h = newHashes({ ...listed, size });
  await hashInto(h, file);
  return finish(h);
}

/** Writes a download stream to the end of `file` (at `offset`), feeding the hashes; stops at `limit` bytes. */
async function appendStream(
  stream: ReadableStream<Uint8Array>,
  file: string,
  offset: number,
  h: Hashes,
  limit: number,
  transport: Transport,
): Promise<void> {
  const handle = await open(file, offset > 0 ? 'r+' : 'w');
  const reader = stream.getReader();
  let position = offset;
  try {
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (err) {
        // WebBlob turns the transport's error into a bare message: report the error we recorded.
        throw transport.lastError ?? err;
      }
      if (next.done) break;
      const chunk = next.value;
      if (position + chunk.byteLength > limit)
        throw new HubDownloadError(`the server sent more than the ${limit} bytes it announced`);
      await handle.write(chunk, 0, chunk.byteLength, position);
      h.sha256.update(chunk);
      h.git?.update(chunk);
      position += chunk.byteLength;
    }
    await handle.sync();
  } finally {
    reader.releaseLock();
    await handle.close();
  }
}

/** A range request answered with the whole file (a server that does not resume). */
class RangeIgnored extends Error {
  override name = 'RangeIgnored';
}

/** A data request the server answered with an error status (WebBlob reports only its message). */
class HttpStatus extends Error {
  override name = 'HttpStatus';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** A request with no byte for the stall timeout. */
class Stalled extends Error {
  override name = 'Stalled';
}

/**
 * The fetch handed to @huggingface/hub: a request fails after `stallMs` without its headers, and a body
 * read fails after `stallMs` without its next chunk (a body nobody reads, like a size probe's, is never
 * timed); a range request answered with the whole file is refused, so a resumed download never appends
 * the file to its own beginning.
 */
class Transport {
  lastError: Error | null = null;
  constructor(private readonly stallMs: number) {}

  readonly fetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const controller = new AbortController();
    const signal = init.signal ? AbortSignal.any([init.signal, controller.signal]) : controller.signal;
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const err = new Stalled(`no data for ${this.stallMs / 1000} s from ${new URL(url).origin}`);
        this.lastError = err;
        controller.abort(err);
      }, this.stallMs);
      timer.unref();
    };
    arm();
    let response: Response;
    try {
      response = await fetch(input, { ...init, signal });
    } catch (err) {
      throw this.lastError instanceof Stalled ? this.lastError : err;
    } finally {
      clearTimeout(timer);
    }
    const range = new Headers(init.headers).get('range');
    if (!response.ok)
      this.lastError = new HttpStatus(response.status, `${response.status} ${response.statusText}`);
    const start = range ? Number(/^bytes=(\d+)-/.exec(range)?.[1] ?? 0) : 0;
    if (start > 0 && response.status === 200) {
      await response.body?.cancel();
      const err = new RangeIgnored(`${url} answered a range request with the whole file`);
      this.lastError = err;
      throw err;
    }
    if (!response.body) return response;
    const reader = response.body.getReader();
    const watched = new ReadableStream<Uint8Array>({
      pull: async (out) => {
        arm();
        try {
          const next = await reader.read();
          if (next.done) out.close();
          else out.enqueue(next.value);
        } catch (err) {
          throw this.lastError instanceof Stalled ? this.lastError : err;
        } finally {
          clearTimeout(timer);
        }
      },
      cancel: (reason) => reader.cancel(reason),
    });
    const wrapped = new Response(watched, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
    Object.defineProperty(wrapped, 'url', { value: response.url });
    return wrapped;
  };
}

/** One line saying why a Hub request failed, and what to do about it where that is known. */
function describeFailure(
  err: unknown,
  c: { what: string; file?: string; endpoint: string; token: string | undefined; transport: Transport },
): string {
  const where = c.file ? `${c.what}/${c.file}` : c.what;
  const recorded = c.transport.lastError;
  if (err instanceof Stalled || recorded instanceof Stalled) {
    const msg = (recorded ?? (err as Error)).message;
    const resume = c.file ? '; the partial file is kept and the next run resumes it' : '';
    return `${where}: download stalled (${msg}; HF_HUB_DOWNLOAD_TIMEOUT sets the limit)${resume}`;
  }
  const e = err as { statusCode?: number; message?: string; cause?: { code?: string; message?: string } };
  if (typeof e.statusCode === 'number') {
    const detail = oneLine(e.message ?? '').replace(/\. URL: .*$/, '');
    switch (e.statusCode) {
      case 401:
        return c.token
          ? `${where}: the Hub refused the token in HF_TOKEN (401: ${detail})`
          : `${where}: the Hub answered 401 (${detail}): the repository does not exist, or it is private or gated and needs HF_TOKEN`;
      case 403:
        return `${where}: access denied (403: ${detail})${c.token ? ': the token in HF_TOKEN has no access to this repository (gated? accept its terms on the Hub)' : ': set HF_TOKEN to a token with access'}`;
      case 404:
        return `${where}: not found on ${c.endpoint} (404: ${detail})`;
      default:
        return `${where}: the Hub answered ${e.statusCode} (${detail})`;
    }
  }
  if (err instanceof TypeError && e.cause) {
    return `${where}: cannot reach ${c.endpoint} (${e.cause.code ?? oneLine(e.cause.message ?? String(e.cause))})`;
  }
  return `${where}: ${oneLine(e.message ?? String(err))}`;
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

function mb(bytes: number): string {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(1)} kB`;
}
