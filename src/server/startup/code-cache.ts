// Runs a CommonJS bundle through V8's code cache: a start skips parsing and compiling what the build's warm-up ran.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { writeFileAtomic } from '../../io/atomic.js';

/** What a cache file was made by: V8 accepts its data only from the same version, flags and source. */
const MAKER = `tiny-llm code cache 1 · node ${process.version} · v8 ${process.versions.v8} · ${process.arch}`;
/** sha256 of the source (32 bytes) · sha256 of V8's data (32) · maker length u32 · maker · V8's data. */
const HASH_BYTES = 32;

export interface CachedScript {
  /** module.exports of the bundle. */
  exports: Record<string, unknown>;
  /** 'used' (V8 took the cache), or why it compiled from source: 'absent', 'stale: …', 'damaged: …', 'rejected by V8'. */
  cache: string;
  /**
   * Writes the cache (atomically) from everything compiled so far, when the start did not use a current
   * one (or always, with `force`: a warm-up that ran more of the code than the cache's writer did); call it
   * once the code has run its start-up. Resolves with what happened; never rejects (a read-only install just
   * keeps compiling from source).
   */
  save(force?: boolean): Promise<string>;
}

/** The cache file of a bundle: next to it, `.cache` appended. */
export function codeCacheFile(bundle: string): string {
  return `${bundle}.cache`;
}

/**
 * Runs the CommonJS file `bundleUrl` in this context, as Node's require would (module, exports, require,
 * __filename, __dirname), with V8's code cache when a current one is next to it.
 */
export function runCachedCommonJs(bundleUrl: URL): CachedScript {
  const file = fileURLToPath(bundleUrl);
  const source = readFileSync(file, 'utf8');
  const sourceHash = createHash('sha256').update(source).digest();
  const cacheFile = codeCacheFile(file);
  let cachedData: Buffer | undefined;
  let cache = 'absent';
  let stored: Buffer | null = null;
  try {
    stored = readFileSync(cacheFile);
  } catch {
    // No cache file (or an unreadable one): compile from source.
  }
  if (stored) {
    const checked = currentData(stored, sourceHash);
    if (typeof checked === 'string') cache = checked;
    else cachedData = checked;
  }
  const wrapper = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
  const script = new vm.Script(wrapper, { filename: file, cachedData });
  if (cachedData) cache = script.cachedDataRejected ? 'rejected by V8' : 'used';
  const module = { exports: {} as Record<string, unknown> };
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  run.call(module.exports, module.exports, createRequire(file), module, file, path.dirname(file));

  let saved: Promise<string> | null = null;
  const write = async (): Promise<string> => {
    try {
      await writeFileAtomic(cacheFile, withHeader(script.createCachedData(), sourceHash));
      return `written to ${cacheFile}`;
    } catch (err) {
      return `not written (${(err as Error).message})`;
    }
  };
  const save = (force = false): Promise<string> => {
    if (force) return write();
    saved ??= cache === 'used' ? Promise.resolve('current') : write();
    return saved;
  };
  return { exports: module.exports, cache, save };
}

function withHeader(data: Buffer, sourceHash: Buffer): Buffer {
  const maker = Buffer.from(MAKER);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(maker.length);
  return Buffer.concat([sourceHash, createHash('sha256').update(data).digest(), length, maker, data]);
}

/**
 * V8's data from a cache file made for this source by this Node, or why it is not used. V8 itself checks
 * little (release builds skip its checksum), so a damaged file is caught here, before V8 reads it.
 */
function currentData(file: Buffer, sourceHash: Buffer): Buffer | string {
  const fixed = 2 * HASH_BYTES + 4;
  if (file.length < fixed) return 'damaged: too short';
  if (!file.subarray(0, HASH_BYTES).equals(sourceHash)) return 'stale: made for another source';
  const makerEnd = fixed + file.readUInt32LE(2 * HASH_BYTES);
  if (makerEnd > file.length || file.subarray(fixed, makerEnd).toString() !== MAKER)
    return 'stale: made by another Node version';
  const data = file.subarray(makerEnd);
  if (
    !createHash('sha256')
      .update(data)
      .digest()
      .equals(file.subarray(HASH_BYTES, 2 * HASH_BYTES))
  )
    return 'damaged: its checksum does not match';
  return data;
}
