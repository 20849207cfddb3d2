// The trained-model cache behind `create-model --cache`: entries keyed by a content hash, on a local
// directory (file://DIR) or in Cloud Storage (gs://BUCKET/PREFIX through @google-cloud/storage).
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeDirAtomic, writeFileAtomic } from './atomic.js';
import { pathExists } from './dataset.js';

/** A model directory's files, name → bytes. */
export type ModelFiles = Record<string, Uint8Array>;

export interface ModelCache {
  /** The URI it was opened with, for messages. */
  readonly uri: string;
  /** The entry for key, or null when there is none (a damaged entry counts as none). */
  get(key: string): Promise<ModelFiles | null>;
  /** Stores an entry; it becomes visible complete or not at all. */
  put(key: string, files: ModelFiles): Promise<void>;
}

const KEY = /^[0-9a-f]{64}$/;
const MANIFEST = 'manifest.json';

interface Manifest {
  files: Record<string, string>; // name → sha256 hex
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function checkKey(key: string): void {
  if (!KEY.test(key)) throw new Error(`cache key must be 64 hex digits, got ${JSON.stringify(key)}`);
}

/** Opens a cache from its URI; anything but file:// and gs:// is refused with the reason. */
export async function openModelCache(uri: string): Promise<ModelCache> {
  if (uri.startsWith('file://')) {
    let dir: string;
    try {
      dir = fileURLToPath(uri);
    } catch (err) {
      throw new Error(`--cache ${uri}: not a usable file URI (${(err as Error).message})`);
    }
    return new FileCache(uri, dir);
  }
  const gs = /^gs:\/\/([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:\/(.*))?$/.exec(uri);
  if (gs) return GcsCache.open(uri, gs[1], (gs[2] ?? '').replace(/\/+$/, ''));
  if (uri.startsWith('gs://')) throw new Error(`--cache ${uri}: not a valid gs://BUCKET[/PREFIX] URI`);
  throw new Error(`--cache ${uri}: unsupported scheme (use file://DIR or gs://BUCKET/PREFIX)`);
}

/** Verifies files against a manifest; null when anything is missing or differs. */
function verified(manifest: Manifest, files: ModelFiles): ModelFiles | null {
  const out: ModelFiles = {};
  for (const [name, digest] of Object.entries(manifest.files)) {
    const data = files[name];
    if (!data || sha256(data) !== digest) return null;
    out[name] = data;
  }
  return out;
}

function manifestFor(files: ModelFiles): Uint8Array {
  const manifest: Manifest = { files: {} };
  for (const name of Object.keys(files).sort()) {
    if (name === MANIFEST || name !== path.basename(name) || name.startsWith('.'))
      throw new Error(`cannot cache a file named ${JSON.stringify(name)}`);
    manifest.files[name] = sha256(files[name]);
  }
  return new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
}

function parseManifest(bytes: Uint8Array): Manifest | null {
  try {
    const m = JSON.parse(new TextDecoder().decode(bytes)) as Manifest;
    if (!m || typeof m.files !== 'object' || m.files === null) return null;
    for (const [name, digest] of Object.entries(m.files)) {
      if (name !== path.basename(name) || typeof digest !== 'string') return null;
    }
    return m;
  } catch {
    return null;
  }
}

/** file://DIR: one sub-directory per key holding the files and their manifest. */
class FileCache implements ModelCache {
  constructor(
    readonly uri: string,
    private readonly dir: string,
  ) {}

  async get(key: string): Promise<ModelFiles | null> {
    checkKey(key);
    const entry = path.join(this.dir, key);
    if (!(await pathExists(path.join(entry, MANIFEST)))) return null;
    const manifest = parseManifest(new Uint8Array(await readFile(path.join(entry, MANIFEST))));
    if (!manifest) return null;
    const files: ModelFiles = {};
    const present = new Set(await readdir(entry));
    for (const name of Object.keys(manifest.files)) {
      if (!present.has(name)) return null;
      files[name] = new Uint8Array(await readFile(path.join(entry, name)));
    }
    return verified(manifest, files);
  }

  async put(key: string, files: ModelFiles): Promise<void> {
    checkKey(key);
    const manifest = manifestFor(files);
    await writeDirAtomic(path.join(this.dir, key), async (tmp) => {
      for (const [name, data] of Object.entries(files)) await writeFileAtomic(path.join(tmp, name), data);
      await writeFileAtomic(path.join(tmp, MANIFEST), manifest);
    });
  }
}

/** The parts of @google-cloud/storage's Bucket this cache uses. */
interface BucketLike {
  file(name: string): {
    save(data: Uint8Array, options: Record<string, unknown>): Promise<unknown>;
    download(): Promise<[Buffer]>;
  };
}

/**
 * gs://BUCKET/PREFIX: objects PREFIX/KEY/NAME, then PREFIX/KEY/manifest.json written last, so an entry
 * without its manifest (an interrupted upload) is a miss. Credentials come from the environment as usual;
 * STORAGE_EMULATOR_HOST points the client at an emulator.
 */
class GcsCache implements ModelCache {
  private constructor(
    readonly uri: string,
    private readonly bucket: BucketLike,
    private readonly prefix: string,
  ) {}

  static async open(uri: string, bucketName: string, prefix: string): Promise<GcsCache> {
    const { Storage } = await import('@google-cloud/storage');
    const storage = new Storage();
    return new GcsCache(uri, storage.bucket(bucketName) as unknown as BucketLike, prefix);
  }

  private object(key: string, name: string): string {
    return this.prefix ? `${this.prefix}/${key}/${name}` : `${key}/${name}`;
  }

  async get(key: string): Promise<ModelFiles | null> {
    checkKey(key);
    const manifestBytes = await this.download(this.object(key, MANIFEST));
    if (!manifestBytes) return null;
    const manifest = parseManifest(manifestBytes);
    if (!manifest) return null;
    const files: ModelFiles = {};
    for (const name of Object.keys(manifest.files)) {
      const data = await this.download(this.object(key, name));
      if (!data) return null;
      files[name] = data;
    }
    return verified(manifest, files);
  }

  async put(key: string, files: ModelFiles): Promise<void> {
    checkKey(key);
    const manifest = manifestFor(files);
    for (const [name, data] of Object.entries(files)) await this.upload(this.object(key, name), data);
    await this.upload(this.object(key, MANIFEST), manifest);
  }

  private async upload(name: string, data: Uint8Array): Promise<void> {
    try {
      await this.bucket.file(name).save(data, { resumable: false, contentType: 'application/octet-stream' });
    } catch (err) {
      throw new Error(`${this.uri}: upload of ${name} failed (${(err as Error).message})`);
    }
  }

  private async download(name: string): Promise<Uint8Array | null> {
    try {
      const [buf] = await this.bucket.file(name).download();
      return new Uint8Array(buf);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return null;
      throw new Error(`${this.uri}: download of ${name} failed (${(err as Error).message})`);
    }
  }
}
