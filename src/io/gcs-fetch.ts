// Fetches the objects under gs://BUCKET/PREFIX into a local directory, each checked against the CRC32C and
// MD5 that Cloud Storage lists for it; the directory appears complete or not at all.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { writeDirAtomic } from './atomic.js';

export interface GcsLocation {
  bucket: string;
  /** Without leading or trailing slashes; '' for the bucket's top level. */
  prefix: string;
}

/** A fetch problem, in one line naming the URI and, where it applies, the object. */
export class GcsFetchError extends Error {
  override name = 'GcsFetchError';
}

/** The bucket and prefix of `gs://BUCKET[/PREFIX]`, or a reason it is not one. */
export function parseGcsUri(uri: string): GcsLocation {
  const m = /^gs:\/\/([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:\/(.*))?$/.exec(uri);
  if (!m) throw new GcsFetchError(`${uri}: not a gs://BUCKET[/PREFIX] URI`);
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix.split('/').some((p) => p === '..' || p === '.'))
    throw new GcsFetchError(`${uri}: the prefix may not hold "." or ".." parts`);
  return { bucket: m[1], prefix };
}

/** The parts of @google-cloud/storage this module uses (tests may pass their own). */
interface ObjectMetadata {
  name?: string;
  size?: string | number;
  md5Hash?: string;
  crc32c?: string;
  generation?: string | number;
}
interface FileLike {
  name: string;
  metadata: ObjectMetadata;
  createReadStream(options: { validation: false }): Readable;
}
interface BucketLike {
  getFiles(query: {
    prefix: string;
    delimiter: string;
    autoPaginate: boolean;
  }): Promise<[FileLike[], ...unknown[]]>;
  file(name: string, options?: { generation?: number }): FileLike;
}

export interface GcsFetchOptions {
  log: (line: string) => void;
  /** Seconds without a byte before an object's download counts as stalled. */
  stallTimeoutMs: number;
}

export interface FetchedObject {
  size: number;
  md5: string | null;
  crc32c: string | null;
  generation: string | null;
}

/**
 * Downloads every object directly under the prefix (not in sub-folders, not dot files) into `dir`, written
 * atomically: on any failure the previous `dir` (or its absence) is left as it was. Each object is read at
 * the generation the listing saw, and its size, CRC32C and MD5 (those the metadata carries; at least one)
 * must match. STORAGE_EMULATOR_HOST points the client at an emulator.
 */
export async function fetchGcsPrefix(
  uri: string,
  dir: string,
  o: GcsFetchOptions,
): Promise<Record<string, FetchedObject>> {
  const loc = parseGcsUri(uri);
  const { Storage, CRC32C } = await import('@google-cloud/storage');
  const bucket = new Storage().bucket(loc.bucket) as unknown as BucketLike;
  const listPrefix = loc.prefix ? `${loc.prefix}/` : '';
  let listed: FileLike[];
  try {
    [listed] = await bucket.getFiles({ prefix: listPrefix, delimiter: '/', autoPaginate: true });
  } catch (err) {
    throw new GcsFetchError(`${uri}: cannot list objects (${describe(err)})`);
  }
  const objects = listed.filter((f) => {
    const name = f.name.slice(listPrefix.length);
    return name !== '' && !name.includes('/') && !name.startsWith('.');
  });
  if (objects.length === 0) throw new GcsFetchError(`${uri}: no objects under this prefix`);

  const fetched: Record<string, FetchedObject> = {};
  await writeDirAtomic(dir, async (tmp) => {
    for (const f of objects) {
      const name = f.name.slice(listPrefix.length);
      const meta = f.metadata;
      const size = Number(meta.size);
      const where = `gs://${loc.bucket}/${f.name}`;
      if (!Number.isSafeInteger(size) || size < 0) throw new GcsFetchError(`${where}: listed without a size`);
      if (!meta.crc32c && !meta.md5Hash)
        throw new GcsFetchError(`${where}: listed without a CRC32C or MD5 to check`);
      const generation = meta.generation !== undefined ? Number(meta.generation) : undefined;
      const started = performance.now();
      const crc = new CRC32C();
      const md5 = createHash('md5');
      let got = 0;
      const handle = await open(path.join(tmp, name), 'wx');
      try {
        const stream = bucket
          .file(f.name, generation !== undefined ? { generation } : {})
          .createReadStream({ validation: false });
        await drain(stream, o.stallTimeoutMs, where, async (chunk) => {
          got += chunk.byteLength;
          if (got > size) throw new GcsFetchError(`${where}: more than the ${size} bytes listed`);
          crc.update(chunk);
          md5.update(chunk);
          await handle.write(chunk);
        });
        await handle.sync();
      } finally {
        await handle.close();
      }
      if (got !== size) throw new GcsFetchError(`${where}: got ${got} of ${size} bytes`);
      const crcText = crc.toString();
      const md5Text = md5.digest('base64');
      if (meta.crc32c && crcText !== meta.crc32c)
        throw new GcsFetchError(`${where}: CRC32C ${crcText} does not match the listed ${meta.crc32c}`);
      if (meta.md5Hash && md5Text !== meta.md5Hash)
        throw new GcsFetchError(`${where}: MD5 ${md5Text} does not match the listed ${meta.md5Hash}`);
      fetched[name] = {
        size,
        md5: meta.md5Hash ?? null,
        crc32c: meta.crc32c ?? null,
        generation: meta.generation !== undefined ? String(meta.generation) : null,
      };
      const seconds = (performance.now() - started) / 1000;
      o.log(
        `fetched ${where} (${size} bytes in ${seconds.toFixed(1)} s, ${[meta.crc32c && 'CRC32C', meta.md5Hash && 'MD5'].filter(Boolean).join(' and ')} verified)`,
      );
    }
  });
  return fetched;
}

/** Feeds a stream's chunks to `take` one at a time; fails when no chunk comes for `stallMs`. */
function drain(
  stream: Readable,
  stallMs: number,
  where: string,
  take: (chunk: Buffer) => Promise<void>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      clearTimeout(timer);
      stream.destroy();
      reject(
        err instanceof GcsFetchError
          ? err
          : new GcsFetchError(`${where}: download failed (${describe(err)})`),
      );
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () => fail(new GcsFetchError(`${where}: download stalled (no data for ${stallMs / 1000} s)`)),
        stallMs,
      );
    };
    arm();
    let pending = Promise.resolve();
    stream.on('data', (chunk: Buffer) => {
      arm();
      stream.pause();
      pending = pending
        .then(() => take(chunk))
        .then(() => {
          stream.resume();
        }, fail);
    });
    stream.on('error', fail);
    stream.on('end', () => {
      pending.then(() => {
        if (failed) return;
        clearTimeout(timer);
        resolve();
      }, fail);
    });
  });
}

function describe(err: unknown): string {
  const e = err as { code?: number | string; message?: string };
  const text = (e.message ?? String(err)).replace(/\s+/g, ' ').trim();
  if (e.code === 404) return `not found: ${text}`;
  if (e.code === 401 || e.code === 403) return `access denied (${e.code}): ${text}`;
  return text;
}
