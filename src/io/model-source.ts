// Where `create-model --from-pretrained` takes a model from: the Hugging Face Hub, a local Hugging Face
// directory, a GGUF file or a Cloud Storage prefix; each becomes a local, verified Hugging Face directory.
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { saveModelDir } from './checkpoint.js';
import { fetchGcsPrefix, parseGcsUri } from './gcs-fetch.js';
import { GgmlType, type GgufModel, ggufModel, parseGguf } from './gguf.js';
import {
  DEFAULT_HF_ENDPOINT,
  DEFAULT_STALL_TIMEOUT_S,
  downloadHubModel,
  parseHubSource,
} from './hub-download.js';

export type ModelSource =
  | { kind: 'hf'; spec: string; repo: string; revision: string | null }
  | { kind: 'dir'; spec: string; dir: string }
  | { kind: 'gguf'; spec: string; file: string }
  | { kind: 'gcs'; spec: string; uri: string };

/** A source that cannot be used, in one line. */
export class ModelSourceError extends Error {
  override name = 'ModelSourceError';
}

const SOURCES = 'hf:ORG/NAME[@REVISION], a Hugging Face model directory, a .gguf file or gs://BUCKET/PREFIX';

/** Reads a SOURCE argument (and --revision, which only a Hub source takes). */
export function parseModelSource(spec: string, revision: string | null = null): ModelSource {
  if (spec.trim() === '') throw new ModelSourceError(`--from-pretrained needs a source: ${SOURCES}`);
  if (spec.startsWith('hf:')) {
    const ref = parseHubSource(spec);
    if (revision !== null && ref.revision !== null && revision !== ref.revision)
      throw new ModelSourceError(
        `${spec}: --revision ${revision} contradicts the @${ref.revision} in the source`,
      );
    return { kind: 'hf', spec, repo: ref.repo, revision: revision ?? ref.revision };
  }
  if (revision !== null)
    throw new ModelSourceError(
      `--revision applies to hf: sources only (the source is ${JSON.stringify(spec)})`,
    );
  if (spec.startsWith('gs://')) {
    parseGcsUri(spec);
    return { kind: 'gcs', spec, uri: spec };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec))
    throw new ModelSourceError(`${spec}: unsupported source (use ${SOURCES})`);
  if (spec.toLowerCase().endsWith('.gguf')) return { kind: 'gguf', spec, file: spec };
  return { kind: 'dir', spec, dir: spec };
}

export interface ResolveOptions {
  /** Where downloads are staged (and kept between runs to resume), beside the model directory. */
  stagingDir: string;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
}

/** A source made local: a Hugging Face directory to load, and what to record about where it came from. */
export interface LocalSource {
  dir: string;
  /** The source as written in the model card: URI, revision asked for, commit or generations fetched. */
  record: Record<string, unknown>;
  /** sha256 of the files as the source published them, when the download verified them. */
  sha256: Record<string, string> | null;
}

/** Seconds of silence before a download counts as stalled, from HF_HUB_DOWNLOAD_TIMEOUT (default 30). */
export function stallTimeoutMs(env: NodeJS.ProcessEnv): number {
  const raw = env.HF_HUB_DOWNLOAD_TIMEOUT;
  if (raw === undefined || raw === '') return DEFAULT_STALL_TIMEOUT_S * 1000;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0)
    throw new ModelSourceError(
      `HF_HUB_DOWNLOAD_TIMEOUT must be a positive number of seconds, got ${JSON.stringify(raw)}`,
    );
  return seconds * 1000;
}

/** Makes the source a local Hugging Face directory (downloading and verifying it when it is remote). */
export async function resolveModelSource(source: ModelSource, o: ResolveOptions): Promise<LocalSource> {
  switch (source.kind) {
    case 'dir': {
      const info = await stat(source.dir).catch(() => null);
      if (!info) throw new ModelSourceError(`${source.spec}: no such directory (sources: ${SOURCES})`);
      if (!info.isDirectory())
        throw new ModelSourceError(`${source.spec}: not a directory (sources: ${SOURCES})`);
      return { dir: source.dir, record: { uri: path.resolve(source.dir), kind: 'directory' }, sha256: null };
    }
    case 'gguf':
      return ggufAsDirectory(source, o.stagingDir);
    case 'hf': {
      const endpoint = (o.env.HF_ENDPOINT || DEFAULT_HF_ENDPOINT).replace(/\/+$/, '');
      const download = await downloadHubModel(
        { repo: source.repo, revision: source.revision },
        o.stagingDir,
        {
          endpoint,
          token: o.env.HF_TOKEN || null,
          stallTimeoutMs: stallTimeoutMs(o.env),
          log: o.log,
        },
      );
      return {
        dir: download.dir,
        record: {
          uri: `hf:${source.repo}`,
          kind: 'huggingface-hub',
          revision: source.revision ?? 'main',
          commit: download.commit,
          ...(endpoint !== DEFAULT_HF_ENDPOINT ? { endpoint } : {}),
        },
        sha256: download.files,
      };
    }
    case 'gcs': {
      const dir = path.join(o.stagingDir, 'gcs');
      const objects = await fetchGcsPrefix(source.uri, dir, {
        log: o.log,
        stallTimeoutMs: stallTimeoutMs(o.env),
      });
      const generations: Record<string, string | null> = {};
      for (const [name, obj] of Object.entries(objects)) generations[name] = obj.generation;
      return { dir, record: { uri: source.uri, kind: 'cloud-storage', generations }, sha256: null };
    }
  }
}

/**
 * A GPT-2 GGUF file written as a Hugging Face directory in the staging area: its float weights (F32, F16 or
 * BF16, converted once) as float32 safetensors, its hyper-parameters as config.json, its tokenizer's files.
 * Q8_0 weights are refused: serve such a file as it is (`serve --model-file`), without losing their layout.
 */
async function ggufAsDirectory(
  source: Extract<ModelSource, { kind: 'gguf' }>,
  stagingDir: string,
): Promise<LocalSource> {
  const info = await stat(source.file).catch(() => null);
  if (!info) throw new ModelSourceError(`${source.spec}: no such file (sources: ${SOURCES})`);
  if (!info.isFile()) throw new ModelSourceError(`${source.spec}: not a file (sources: ${SOURCES})`);
  let model: GgufModel;
  let types: string[];
  try {
    const bytes = new Uint8Array(await readFile(source.file));
    model = ggufModel(bytes, source.spec);
    types = [...new Set(parseGguf(bytes, source.spec).tensors.map((t) => ggmlTypeName(t.type)))].sort();
  } catch (err) {
    throw new ModelSourceError(err instanceof Error ? err.message : String(err));
  }
  if (!model.params)
    throw new ModelSourceError(
      `${source.spec}: its matrices are Q8_0 (int8); a model directory holds float weights, so serve the file ` +
        'as it is (`tiny-llm serve --model-file FILE.gguf`) or convert an F32/F16 GGUF',
    );
  const dir = path.join(stagingDir, 'gguf');
  await saveModelDir(dir, { config: model.config, params: model.params, tokenizerData: model.tokenizerData });
  return { dir, record: { uri: path.resolve(source.file), kind: 'gguf', tensor_types: types }, sha256: null };
}

function ggmlTypeName(type: number): string {
  return Object.entries(GgmlType).find(([, t]) => t === type)?.[0] ?? `type ${type}`;
}

/** The staging directory of a model directory's downloads: hidden beside it, never where a server looks. */
export function stagingDirFor(modelDir: string): string {
  const target = path.resolve(modelDir);
  return path.join(path.dirname(target), `.${path.basename(target)}.download`);
}

/** Removes the staging directory once the model directory is written. */
export async function removeStaging(stagingDir: string): Promise<void> {
  await rm(stagingDir, { recursive: true, force: true });
}
