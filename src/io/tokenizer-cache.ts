// The tokenizer tables saved next to a model's tokenizer files (tokenizer-tables.bin), so a server starts without scanning them.
import { createHash } from 'node:crypto';
import { checkTables, sharedInt32, sharedUint8, type TokenizerTables } from '../tokenizer/tables.js';

/** The cache file's name inside a model directory. */
export const TOKENIZER_CACHE_FILE = 'tokenizer-tables.bin';

/**
 * Bumped whenever the tables built from the same files could change (a fix in the scan or the table
 * layout): a cache written by another format version is ignored and the files are scanned instead.
 */
export const TOKENIZER_CACHE_VERSION = 1;

const MAGIC = 'TLLMTOK\0';
/** magic (8) · version u32 · body length u32 · SHA-256 of the source files (32) · SHA-256 of the body (32). */
const HEADER_BYTES = 80;
/** vocabSize, eosTokenId, pairs length, mergeResult length, bytes length, JSON length (u32 each). */
const COUNTS = 6;

/** Why a cache file was not used; the server logs it and scans the tokenizer files instead. */
export class TokenizerCacheError extends Error {
  override name = 'TokenizerCacheError';
}

/** The source files a cache stands for, as (name, bytes) in the order the loader reads them. */
export type TokenizerSources = ReadonlyArray<readonly [string, Uint8Array]>;

/** SHA-256 over the files' names and bytes: a cache is used only for the exact files it was made from. */
export function tokenizerSourceHash(sources: TokenizerSources): Uint8Array {
  const hash = createHash('sha256');
  for (const [name, bytes] of sources) hash.update(sourceHashPrefix(name, bytes.length)).update(bytes);
  return new Uint8Array(hash.digest());
}

/** What precedes a file's bytes in the source hash's input: its name, a NUL and its size (u64, little-endian). */
export function sourceHashPrefix(name: string, size: number): Uint8Array {
  const encoded = Buffer.from(name, 'utf8');
  const prefix = Buffer.alloc(encoded.length + 9);
  encoded.copy(prefix);
  prefix.writeBigUInt64LE(BigInt(size), encoded.length + 1);
  return prefix;
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

const pad4 = (n: number): number => (n + 3) & ~3;

/** The cache file for `tables` built from the files hashed in `sourceHash`. */
export function encodeTokenizerCache(tables: TokenizerTables, sourceHash: Uint8Array): Uint8Array {
  if (!littleEndian) throw new TokenizerCacheError('tokenizer cache: only little-endian machines write it');
  checkTables(tables);
  if (sourceHash.length !== 32) throw new RangeError('sourceHash must be a SHA-256 digest (32 bytes)');
  const json = new TextEncoder().encode(
    JSON.stringify({ textTokens: tables.textTokens, specialTokens: tables.specialTokens }),
  );
  const sections: Uint8Array[] = [
    bytesOf(
      new Uint32Array([
        tables.vocabSize,
        tables.eosTokenId,
        tables.pairs.length,
        tables.mergeResult.length,
        tables.bytes.length,
        json.length,
      ]),
    ),
    bytesOf(tables.byteIds),
    bytesOf(tables.pairs),
    bytesOf(tables.mergeResult),
    bytesOf(tables.offsets),
    tables.bytes,
    json,
  ];
  const bodyLength = sections.reduce((sum, s) => sum + pad4(s.length), 0);
  const file = new Uint8Array(HEADER_BYTES + bodyLength);
  let at = HEADER_BYTES;
  for (const s of sections) {
    file.set(s, at);
    at += pad4(s.length);
  }
  const body = file.subarray(HEADER_BYTES);
  const header = new DataView(file.buffer, 0, HEADER_BYTES);
  file.set(new TextEncoder().encode(MAGIC), 0);
  header.setUint32(8, TOKENIZER_CACHE_VERSION, true);
  header.setUint32(12, bodyLength, true);
  file.set(sourceHash, 16);
  file.set(createHash('sha256').update(body).digest(), 48);
  return file;
}

/**
 * The tables in a cache file, in SharedArrayBuffers, after checking that the file is one, of this format
 * version, made from the files hashed in `sourceHash`, undamaged (its checksum), and that every entry is
 * in range and the merge table finds each of its merges. Throws TokenizerCacheError saying which check failed.
 */
export function decodeTokenizerCache(file: Uint8Array, sourceHash: Uint8Array): TokenizerTables {
  const recorded = tokenizerCacheSourceHash(file);
  if (!equalBytes(recorded, sourceHash)) throw new TokenizerCacheError('made from other tokenizer files');
  return decodeTokenizerCacheBody(file);
}

/**
 * The hash of the source files a cache file records, after checking its header (a cache file, of this format
 * version, of the length it says). Throws TokenizerCacheError saying which check failed.
 */
export function tokenizerCacheSourceHash(file: Uint8Array): Uint8Array {
  const fail = (problem: string): never => {
    throw new TokenizerCacheError(problem);
  };
  if (!littleEndian) fail('only little-endian machines read it');
  if (file.length < HEADER_BYTES || new TextDecoder().decode(file.subarray(0, 8)) !== MAGIC)
    fail('not a tokenizer cache file');
  const header = new DataView(file.buffer, file.byteOffset, HEADER_BYTES);
  const version = header.getUint32(8, true);
  if (version !== TOKENIZER_CACHE_VERSION)
    fail(`format version ${version}, this build reads ${TOKENIZER_CACHE_VERSION}`);
  const bodyLength = header.getUint32(12, true);
  if (file.length !== HEADER_BYTES + bodyLength)
    fail(`${file.length} bytes, the header says ${HEADER_BYTES + bodyLength}`);
  return file.subarray(16, 48);
}

/**
 * The tables of a cache file whose header checks (see tokenizerCacheSourceHash), whatever files it was made
 * from: checksum, sections and entries checked as decodeTokenizerCache checks them. The caller compares the
 * recorded source hash (a loader does so while the sources are still being hashed).
 */
export function decodeTokenizerCacheBody(file: Uint8Array): TokenizerTables {
  const fail = (problem: string): never => {
    throw new TokenizerCacheError(problem);
  };
  tokenizerCacheSourceHash(file);
  const body = file.subarray(HEADER_BYTES);
  if (!equalBytes(file.subarray(48, 80), createHash('sha256').update(body).digest()))
    fail('damaged (its checksum does not match)');

  let at = 0;
  const take = (bytes: number): Uint8Array => {
    if (at + bytes > body.length) fail('truncated');
    const part = body.subarray(at, at + bytes);
    at += pad4(bytes);
    return part;
  };
  const int32s = (length: number): Int32Array => {
    const out = sharedInt32(length);
    new Uint8Array(out.buffer, out.byteOffset, length * 4).set(take(length * 4));
    return out;
  };
  const counts = new Uint32Array(COUNTS);
  new Uint8Array(counts.buffer).set(take(COUNTS * 4));
  const [vocabSize, eosTokenId, pairsLength, mergeCount, byteCount, jsonLength] = counts;
  if (vocabSize < 1 || vocabSize > 1 << 24) fail(`vocabulary size ${vocabSize}`);
  const limit = body.length;
  if (pairsLength > limit || mergeCount > limit || byteCount > limit || jsonLength > limit)
    fail('a section is longer than the file');
  const byteIds = int32s(256);
  const pairs = int32s(pairsLength);
  const mergeResult = int32s(mergeCount);
  const offsets = int32s(vocabSize + 1);
  const bytes = sharedUint8(byteCount);
  bytes.set(take(byteCount));
  let extra: { textTokens?: unknown; specialTokens?: unknown };
  try {
    extra = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(take(jsonLength)));
  } catch {
    return fail('its token lists are not valid JSON');
  }
  if (at !== body.length) fail('has bytes after its last section');

  const tables: TokenizerTables = {
    vocabSize,
    eosTokenId,
    byteIds,
    pairs,
    mergeResult,
    bytes,
    offsets,
    textTokens: extra.textTokens as Array<[number, string]>,
    specialTokens: extra.specialTokens as Array<[string, number]>,
  };
  try {
    checkTables(tables);
  } catch (err) {
    fail((err as Error).message);
  }
  checkEntries(tables, fail);
  return tables;
}

/**
 * Every id in range, offsets ascending, merge ranks in range and an empty slot in the merge table (so every
 * lookup ends): what decoding needs to stay in bounds. That the entries are the right ones is the checksum's
 * job (they were written from checked tables).
 */
function checkEntries(t: TokenizerTables, fail: (problem: string) => never): void {
  const n = t.vocabSize;
  const outside = (ids: Int32Array, from = 0, step = 1): number => {
    for (let i = from; i < ids.length; i += step) if (ids[i] < 0 || ids[i] >= n) return i;
    return -1;
  };
  if (outside(t.byteIds) >= 0) fail('a byte token id is out of range');
  if (outside(t.mergeResult) >= 0) fail('a merge result id is out of range');
  if (t.offsets[0] !== 0) fail('token offsets do not start at 0');
  for (let i = 0; i < n; i++) if (t.offsets[i + 1] < t.offsets[i]) fail(`token offsets fall at ${i}`);
  const merges = t.mergeResult.length;
  const pairs = t.pairs;
  let used = 0;
  for (let h = 0; h < pairs.length; h += 3) {
    const a = pairs[h];
    if (a === -1) continue;
    const b = pairs[h + 1];
    const rank = pairs[h + 2];
    if (a < 0 || a >= n || b < 0 || b >= n || rank < 0 || rank >= merges)
      fail(`merge table slot ${h / 3} is out of range`);
    used++;
  }
  if (used !== merges) fail(`the merge table holds ${used} merges, the results list ${merges}`);
  const pairList = (value: unknown, idFirst: boolean): boolean =>
    Array.isArray(value) &&
    value.every(
      (e) =>
        Array.isArray(e) &&
        e.length === 2 &&
        Number.isInteger(e[idFirst ? 0 : 1]) &&
        e[idFirst ? 0 : 1] >= 0 &&
        e[idFirst ? 0 : 1] < n &&
        typeof e[idFirst ? 1 : 0] === 'string',
    );
  if (!pairList(t.textTokens, true)) fail('its text tokens are not [id, text] pairs');
  if (!pairList(t.specialTokens, false)) fail('its special tokens are not [text, id] pairs');
}

function bytesOf(a: Uint32Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
