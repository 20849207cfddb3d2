// The BPE tokenizer in compact form: typed arrays over SharedArrayBuffers that any thread adopts without re-parsing.

export const EOS_TOKEN = '<|endoftext|>';

/**
 * Everything the tokenizer needs to encode and decode. The typed arrays live in SharedArrayBuffers, so
 * posting the tables to a worker thread shares them instead of copying.
 */
export interface TokenizerTables {
  /** Number of ids (0..vocabSize-1). */
  vocabSize: number;
  eosTokenId: number;
  /** byte → id of its one-byte token. */
  byteIds: Int32Array;
  /** Open-addressing merge table: slot h holds (left id, right id, rank) at 3h..3h+2; left -1 = empty. */
  pairs: Int32Array;
  /** rank → id of the merged token. */
  mergeResult: Int32Array;
  /** All token bytes in one buffer: token i is bytes[offsets[i] .. offsets[i+1]). */
  bytes: Uint8Array;
  offsets: Int32Array;
  /** Tokens with characters outside GPT-2's byte-level alphabet (their bytes are their UTF-8), as [id, text]. */
  textTokens: Array<[number, string]>;
  /** Tokens matched verbatim in text before pre-tokenization (HF added tokens), as [text, id], in file order. */
  specialTokens: Array<[string, number]>;
}

/** GPT-2's byte → printable character table (bytes that print as themselves keep their code point). */
export function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCharCode(printable ? b : 256 + extra++);
  }
  return table;
}

/** Byte-level character code → byte, or -1 (indexed by UTF-16 code unit; codes ≥ 512 are never byte-level). */
export function charToByteTable(): Int16Array {
  const table = new Int16Array(512).fill(-1);
  const chars = bytesToUnicode();
  for (let b = 0; b < 256; b++) table[chars[b].charCodeAt(0)] = b;
  return table;
}

export function sharedInt32(length: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(Math.max(1, length) * 4), 0, length);
}

export function sharedUint8(length: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(Math.max(1, length)), 0, length);
}

/** An empty merge table sized for `merges` entries (at most half full). */
export function newPairTable(merges: number): Int32Array {
  let capacity = 1;
  while (capacity < merges * 2 + 2) capacity *= 2;
  const pairs = sharedInt32(capacity * 3);
  for (let h = 0; h < capacity; h++) pairs[h * 3] = -1;
  return pairs;
}

/** Bits to shift a 32-bit hash right to index a table of `slots` (a power of two) slots. */
export function pairShift(slots: number): number {
  return 32 - Math.log2(slots);
}

export function pairSlot(a: number, b: number, shift: number): number {
  return Math.imul(Math.imul(a, 0x85ebca6b) ^ b, 0x9e3779b1) >>> shift;
}

/** Rank of the merge (a, b) in `pairs`, or -1 when there is none. */
export function lookupPair(pairs: Int32Array, a: number, b: number): number {
  const slots = pairs.length / 3;
  const mask = slots - 1;
  for (let h = pairSlot(a, b, pairShift(slots)); ; h = (h + 1) & mask) {
    const k = pairs[h * 3];
    if (k === -1) return -1;
    if (k === a && pairs[h * 3 + 1] === b) return pairs[h * 3 + 2];
  }
}

/** Adds the merge (a, b) with `rank`; the caller has checked that it is not there yet. */
export function insertPair(pairs: Int32Array, a: number, b: number, rank: number): void {
  const slots = pairs.length / 3;
  const mask = slots - 1;
  let h = pairSlot(a, b, pairShift(slots));
  while (pairs[h * 3] !== -1) h = (h + 1) & mask;
  pairs[h * 3] = a;
  pairs[h * 3 + 1] = b;
  pairs[h * 3 + 2] = rank;
}

/** Checks that `t` has the shape of tokenizer tables (cheap: sizes and types, not every entry). */
export function checkTables(t: TokenizerTables): TokenizerTables {
  const fail = (problem: string): never => {
    throw new TypeError(`tokenizer: bad tables (${problem})`);
  };
  if (t === null || typeof t !== 'object') fail('not an object');
  const n = t.vocabSize;
  if (!Number.isInteger(n) || n < 1) fail(`vocabSize ${n}`);
  if (!Number.isInteger(t.eosTokenId) || t.eosTokenId < 0 || t.eosTokenId >= n) fail('eosTokenId');
  if (!(t.byteIds instanceof Int32Array) || t.byteIds.length !== 256) fail('byteIds');
  const slots = t.pairs instanceof Int32Array ? t.pairs.length / 3 : 0;
  if (!(slots >= 2 && Number.isInteger(Math.log2(slots)))) fail('pairs');
  if (!(t.mergeResult instanceof Int32Array) || t.mergeResult.length * 2 + 2 > slots) fail('mergeResult');
  if (!(t.offsets instanceof Int32Array) || t.offsets.length !== n + 1) fail('offsets');
  if (!(t.bytes instanceof Uint8Array) || t.bytes.length !== t.offsets[n]) fail('bytes');
  if (!Array.isArray(t.textTokens) || !Array.isArray(t.specialTokens)) fail('textTokens/specialTokens');
  return t;
}
