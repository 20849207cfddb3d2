// GPT-2 byte-level BPE: text → the ids Hugging Face `tokenizers` gives for GPT-2, and ids → text.
import {
  bytesToUnicode,
  charToByteTable,
  checkTables,
  EOS_TOKEN,
  insertPair,
  lookupPair,
  newPairTable,
  pairShift,
  pairSlot,
  sharedInt32,
  sharedUint8,
  type TokenizerTables,
} from './tables.js';

/** A byte-level BPE vocabulary in Hugging Face's form (`vocab.json` + `merges.txt`, or `tokenizer.json`). */
export interface TokenizerData {
  /** Token in byte-level unicode form (e.g. "Ġthe") → id; the ids must be exactly 0..n-1. */
  vocab: Record<string, number>;
  /** Merge rules, rank 0 first; each joins two vocab tokens into a vocab token. */
  merges: Array<[string, string]>;
  /** Tokens matched verbatim in text before pre-tokenization (HF added tokens); default `<|endoftext|>`. */
  specialTokens?: string[];
}

export { bytesToUnicode, EOS_TOKEN, type TokenizerTables } from './tables.js';

// Oniguruma's (and Rust regex's) `\s`: \t..\r, NEL and the Z categories; JS `\s` differs (it adds U+FEFF, lacks U+0085).
const WS = '\\t-\\r\\x85\\p{Z}';
/** GPT-2's pre-tokenizer pattern, with `\s` spelled out so it means what it means in HF `tokenizers`. */
const PRE_TOKENIZE_SOURCE = `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`;

/** Pieces with at most this many bytes merge by scanning; longer ones use a heap (O(n log n)). */
const SCAN_MAX_SYMBOLS = 48;
/** Pieces up to this many UTF-16 units are cached; the cache is emptied when it reaches CACHE_MAX entries. */
const CACHE_MAX_PIECE = 64;
const CACHE_MAX = 20_000;
const POS_SPAN = 4294967296; // heap key = rank * 2^32 + position

/**
 * Validates a vocabulary and its merges and packs them into tables (in SharedArrayBuffers). Errors say
 * what is wrong. `new Gpt2Tokenizer(data)` does this; build the tables once to share them between threads.
 */
export function buildTokenizerTables(data: TokenizerData): TokenizerTables {
  return tablesAndTokens(data).tables;
}

function tablesAndTokens(data: TokenizerData): { tables: TokenizerTables; tokens: string[] } {
  if (data === null || typeof data !== 'object') throw new TypeError('tokenizer: data must be an object');
  const { vocab, merges } = data;
  if (vocab === null || typeof vocab !== 'object' || Array.isArray(vocab)) {
    throw new TypeError('tokenizer: vocab must be an object mapping token → id');
  }
  if (!Array.isArray(merges))
    throw new TypeError('tokenizer: merges must be an array of [left, right] pairs');

  const tokens = Object.keys(vocab);
  const n = tokens.length;
  if (n === 0) throw new Error('tokenizer: vocab is empty');
  const idToToken = new Array<string>(n);
  const tokenIds = new Map<string, number>();
  for (const token of tokens) {
    const id = vocab[token];
    if (token.length === 0) throw new Error('tokenizer: vocab contains an empty token');
    if (!Number.isInteger(id) || id < 0 || id >= n) {
      throw new Error(
        `tokenizer: vocab id ${id} of ${JSON.stringify(token)} is not an integer in 0..${n - 1}`,
      );
    }
    const other = idToToken[id];
    if (other !== undefined) {
      throw new Error(
        `tokenizer: vocab id ${id} is used twice (${JSON.stringify(other)}, ${JSON.stringify(token)})`,
      );
    }
    idToToken[id] = token;
    tokenIds.set(token, id);
  }

  const byteChars = bytesToUnicode();
  const charToByte = charToByteTable();
  const byteIds = sharedInt32(256);
  for (let b = 0; b < 256; b++) {
    const id = tokenIds.get(byteChars[b]);
    if (id === undefined) {
      throw new Error(
        `tokenizer: vocab lacks the byte-level token ${JSON.stringify(byteChars[b])} (byte ${b})`,
      );
    }
    byteIds[b] = id;
  }

  const eosTokenId = tokenIds.get(EOS_TOKEN);
  if (eosTokenId === undefined) throw new Error(`tokenizer: vocab has no ${EOS_TOKEN} token`);

  if (merges.length >= 2 ** 21) throw new Error(`tokenizer: too many merges (${merges.length})`);
  const pairs = newPairTable(merges.length);
  const mergeResult = sharedInt32(merges.length);
  for (let rank = 0; rank < merges.length; rank++) {
    const merge = merges[rank];
    if (
      !Array.isArray(merge) ||
      merge.length !== 2 ||
      typeof merge[0] !== 'string' ||
      typeof merge[1] !== 'string'
    ) {
      throw new Error(`tokenizer: merge ${rank} is not a pair of strings: ${JSON.stringify(merge)}`);
    }
    const [left, right] = merge;
    const a = tokenIds.get(left);
    const b = tokenIds.get(right);
    const merged = tokenIds.get(left + right);
    if (a === undefined)
      throw new Error(
        `tokenizer: merge ${rank} (${left} ${right}): ${JSON.stringify(left)} is not in the vocab`,
      );
    if (b === undefined)
      throw new Error(
        `tokenizer: merge ${rank} (${left} ${right}): ${JSON.stringify(right)} is not in the vocab`,
      );
    if (merged === undefined) {
      throw new Error(
        `tokenizer: merge ${rank} (${left} ${right}): the result ${JSON.stringify(left + right)} is not in the vocab`,
      );
    }
    const earlier = lookupPair(pairs, a, b);
    if (earlier >= 0) throw new Error(`tokenizer: merge ${rank} (${left} ${right}) repeats merge ${earlier}`);
    insertPair(pairs, a, b, rank);
    mergeResult[rank] = merged;
  }

  // Token bytes: byte-level characters map back to bytes; a token with any other character (an added
  // token) is taken as its UTF-8 bytes, as HF's ByteLevel decoder does.
  const encoder = new TextEncoder();
  const fallback = new Map<number, Uint8Array>();
  const textTokens: Array<[number, string]> = [];
  const offsets = sharedInt32(n + 1);
  for (let id = 0; id < n; id++) {
    const token = idToToken[id];
    let byteLevel = true;
    for (let i = 0; i < token.length && byteLevel; i++) {
      const c = token.charCodeAt(i);
      byteLevel = c < charToByte.length && charToByte[c] >= 0;
    }
    if (!byteLevel) {
      fallback.set(id, encoder.encode(token));
      textTokens.push([id, token]);
    }
    offsets[id + 1] = offsets[id] + (byteLevel ? token.length : fallback.get(id)!.length);
  }
  const bytes = sharedUint8(offsets[n]);
  for (let id = 0; id < n; id++) {
    const utf8 = fallback.get(id);
    if (utf8 !== undefined) {
      bytes.set(utf8, offsets[id]);
      continue;
    }
    const token = idToToken[id];
    for (let i = 0, at = offsets[id]; i < token.length; i++) bytes[at + i] = charToByte[token.charCodeAt(i)];
  }

  const specials = data.specialTokens ?? [EOS_TOKEN];
  if (!Array.isArray(specials)) throw new TypeError('tokenizer: specialTokens must be an array of strings');
  const specialTokens: Array<[string, number]> = [];
  for (const s of specials) {
    const id = typeof s === 'string' && s.length > 0 ? tokenIds.get(s) : undefined;
    if (id === undefined)
      throw new Error(`tokenizer: special token ${JSON.stringify(s)} is not in the vocab`);
    specialTokens.push([s, id]);
  }
  const tables: TokenizerTables = {
    vocabSize: n,
    eosTokenId,
    byteIds,
    pairs,
    mergeResult,
    bytes,
    offsets,
    textTokens,
    specialTokens,
  };
  return { tables, tokens: idToToken };
}

function isTables(source: TokenizerData | TokenizerTables): source is TokenizerTables {
  return source !== null && typeof source === 'object' && 'pairs' in source;
}

export class Gpt2Tokenizer {
  readonly vocabSize: number;
  readonly eosTokenId: number;
  /** The compact form; post it to another thread and build a tokenizer there with `new Gpt2Tokenizer(tables)`. */
  readonly tables: TokenizerTables;

  private idToTokenTable: string[] | null = null; // built on first use when made from tables
  private tokenIds: Map<string, number> | null = null; // built on first tokenToId
  private readonly byteIds: Int32Array; // byte → id of its one-byte token
  // Open-addressing table (left id, right id) → merge rank, three int32 per slot.
  private readonly pairs: Int32Array;
  private readonly pairShift: number;
  private readonly pairMask: number;
  private readonly mergeResult: Int32Array; // rank → id of the merged token
  // All token bytes in one buffer: token i is bytes[offsets[i] .. offsets[i+1]).
  private readonly bytes: Uint8Array;
  private readonly offsets: Int32Array;
  private readonly preTokenize = new RegExp(PRE_TOKENIZE_SOURCE, 'gu');
  private readonly specialSplit: RegExp | null;
  private readonly specialIds: Map<string, number>;
  private readonly cache = new Map<string, number[]>();
  private symbols = new Int32Array(256); // scratch: a piece's symbol ids while merging
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  /** From a vocabulary and merges (validated; errors say what is wrong), or from tables built earlier. */
  constructor(source: TokenizerData | TokenizerTables) {
    let tables: TokenizerTables;
    if (isTables(source)) {
      tables = checkTables(source);
    } else {
      const built = tablesAndTokens(source);
      tables = built.tables;
      this.idToTokenTable = built.tokens;
    }
    this.tables = tables;
    this.vocabSize = tables.vocabSize;
    this.eosTokenId = tables.eosTokenId;
    this.byteIds = tables.byteIds;
    this.pairs = tables.pairs;
    const slots = tables.pairs.length / 3;
    this.pairShift = pairShift(slots);
    this.pairMask = slots - 1;
    this.mergeResult = tables.mergeResult;
    this.bytes = tables.bytes;
    this.offsets = tables.offsets;
    this.specialIds = new Map(tables.specialTokens);
    // Longest first, so at one position the longest special token wins (HF matches leftmost-longest).
    const alternatives = [...this.specialIds.keys()]
      .sort((x, y) => y.length - x.length)
      .map((s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
    this.specialSplit = alternatives.length > 0 ? new RegExp(alternatives.join('|'), 'gu') : null;
  }

  /**
   * Text → ids, as HF `tokenizers` GPT-2 encodes it: special tokens in the text become their ids, unless
   * `special` is false (then "<|endoftext|>" is encoded as the plain characters it is made of).
   */
  encode(text: string, options: { special?: boolean } = {}): number[] {
    if (typeof text !== 'string')
      throw new TypeError(`tokenizer: encode expects a string, got ${typeof text}`);
    // UTF-8 cannot carry lone surrogates: they become U+FFFD, as in HF's (Rust) strings.
    if (/\p{Cs}/u.test(text)) text = text.replace(/\p{Cs}/gu, '\uFFFD');
    const out: number[] = [];
    const split = options.special === false ? null : this.specialSplit;
    if (split === null) {
      this.encodeOrdinary(text, out);
      return out;
    }
    split.lastIndex = 0;
    let from = 0;
    for (let m = split.exec(text); m !== null; m = split.exec(text)) {
      if (m.index > from) this.encodeOrdinary(text.slice(from, m.index), out);
      out.push(this.specialIds.get(m[0])!);
      from = m.index + m[0].length;
    }
    if (from < text.length) this.encodeOrdinary(from === 0 ? text : text.slice(from), out);
    return out;
  }

  /** Ids → text: the tokens' bytes joined and read as UTF-8 (invalid sequences become U+FFFD); no clean-up. */
  decode(ids: ArrayLike<number>): string {
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = this.checkId(ids[i]);
      total += this.offsets[id + 1] - this.offsets[id];
    }
    const buf = new Uint8Array(total);
    for (let i = 0, at = 0; i < ids.length; i++) {
      const id = ids[i];
      const start = this.offsets[id];
      const end = this.offsets[id + 1];
      buf.set(this.bytes.subarray(start, end), at);
      at += end - start;
    }
    return this.utf8.decode(buf);
  }

  /** The raw bytes of one token (a read-only view; do not modify it). */
  tokenBytes(id: number): Uint8Array {
    id = this.checkId(id);
    return this.bytes.subarray(this.offsets[id], this.offsets[id + 1]);
  }

  /** The vocab string of an id (byte-level form, e.g. "Ġthe"), or undefined for an unknown id. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) ? this.tokenStrings()[id] : undefined;
  }

  /** The id of a vocab string (byte-level form), or undefined when it is not in the vocab. */
  tokenToId(token: string): number | undefined {
    if (this.tokenIds === null) {
      const strings = this.tokenStrings();
      this.tokenIds = new Map();
      for (let id = 0; id < strings.length; id++) this.tokenIds.set(strings[id], id);
    }
    return this.tokenIds.get(token);
  }

  /** Every token's vocab string, rebuilt from the token bytes the first time it is needed. */
  private tokenStrings(): string[] {
    if (this.idToTokenTable !== null) return this.idToTokenTable;
    const byteChars = bytesToUnicode();
    const strings = new Array<string>(this.vocabSize);
    for (let id = 0; id < this.vocabSize; id++) {
      let s = '';
      for (let i = this.offsets[id]; i < this.offsets[id + 1]; i++) s += byteChars[this.bytes[i]];
      strings[id] = s;
    }
    for (const [id, text] of this.tables.textTokens) strings[id] = text;
    this.idToTokenTable = strings;
    return strings;
  }

  private checkId(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`tokenizer: unknown token id ${id} (vocab size ${this.vocabSize})`);
    }
    return id;
  }

  /** Pre-tokenizes text without special tokens and appends each piece's BPE ids to `out`. */
  private encodeOrdinary(text: string, out: number[]): void {
    const re = this.preTokenize;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const piece = m[0];
      const cached = this.cache.get(piece);
      if (cached !== undefined) {
        for (let i = 0; i < cached.length; i++) out.push(cached[i]);
        continue;
      }
      const ids = this.bpe(piece);
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
      if (piece.length <= CACHE_MAX_PIECE) {
        if (this.cache.size >= CACHE_MAX) this.cache.clear();
        this.cache.set(piece, ids);
      }
    }
  }

  /** One piece → ids: UTF-8 bytes as one-byte tokens, then merges, always the lowest rank, leftmost first. */
  private bpe(piece: string): number[] {
    const n = this.utf8Symbols(piece);
    const sym = this.symbols;
    return n <= SCAN_MAX_SYMBOLS ? this.mergeByScan(sym, n) : this.mergeByHeap(sym, n);
  }

  /** Writes the one-byte token ids of the piece's UTF-8 bytes into `this.symbols`; returns their count. */
  private utf8Symbols(piece: string): number {
    if (this.symbols.length < piece.length * 3) this.symbols = new Int32Array(piece.length * 3);
    const sym = this.symbols;
    const byteIds = this.byteIds;
    let n = 0;
    for (let i = 0; i < piece.length; i++) {
      let c = piece.charCodeAt(i);
      if (c < 0x80) {
        sym[n++] = byteIds[c];
      } else if (c < 0x800) {
        sym[n++] = byteIds[0xc0 | (c >> 6)];
        sym[n++] = byteIds[0x80 | (c & 0x3f)];
      } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < piece.length) {
        // A surrogate pair (encode() has already replaced lone surrogates).
        c = 0x10000 + ((c - 0xd800) << 10) + (piece.charCodeAt(++i) - 0xdc00);
        sym[n++] = byteIds[0xf0 | (c >> 18)];
        sym[n++] = byteIds[0x80 | ((c >> 12) & 0x3f)];
        sym[n++] = byteIds[0x80 | ((c >> 6) & 0x3f)];
        sym[n++] = byteIds[0x80 | (c & 0x3f)];
      } else {
        sym[n++] = byteIds[0xe0 | (c >> 12)];
        sym[n++] = byteIds[0x80 | ((c >> 6) & 0x3f)];
        sym[n++] = byteIds[0x80 | (c & 0x3f)];
      }
    }
    return n;
  }

  /** Short pieces: find the best pair by scanning, merge it, repeat (O(n²), fastest for small n). */
  private mergeByScan(sym: Int32Array, n: number): number[] {
    while (n > 1) {
      let bestRank = 0x7fffffff;
      let bestAt = -1;
      for (let i = 0; i + 1 < n; i++) {
        const r = this.pairRank(sym[i], sym[i + 1]);
        if (r >= 0 && r < bestRank) {
          bestRank = r;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      sym[bestAt] = this.mergeResult[bestRank];
      sym.copyWithin(bestAt + 1, bestAt + 2, n);
      n--;
    }
    return Array.from(sym.subarray(0, n));
  }

  /** Long pieces: a min-heap of (rank, position) over adjacent pairs and a linked list of symbols. */
  private mergeByHeap(sym: Int32Array, n: number): number[] {
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new MinHeap(3 * n);
    for (let i = 0; i + 1 < n; i++) {
      const r = this.pairRank(sym[i], sym[i + 1]);
      if (r >= 0) heap.append(r * POS_SPAN + i);
    }
    heap.heapify();
    while (heap.size > 0) {
      const key = heap.pop();
      const rank = Math.floor(key / POS_SPAN);
      const pos = key - rank * POS_SPAN;
      const right = next[pos];
      // Skip entries made stale by earlier merges: the pair at pos must still be this merge.
      if (sym[pos] < 0 || right < 0 || this.pairRank(sym[pos], sym[right]) !== rank) continue;
      sym[pos] = this.mergeResult[rank];
      sym[right] = -1;
      const after = next[right];
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      const before = prev[pos];
      if (before >= 0) {
        const r = this.pairRank(sym[before], sym[pos]);
        if (r >= 0) heap.push(r * POS_SPAN + before);
      }
      if (after >= 0) {
        const r = this.pairRank(sym[pos], sym[after]);
        if (r >= 0) heap.push(r * POS_SPAN + pos);
      }
    }
    const ids: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) ids.push(sym[i]);
    return ids;
  }

  /** Rank of the merge (a, b), or -1 when there is none. */
  private pairRank(a: number, b: number): number {
    const pairs = this.pairs;
    for (let h = pairSlot(a, b, this.pairShift); ; h = (h + 1) & this.pairMask) {
      const k = pairs[h * 3];
      if (k === -1) return -1;
      if (k === a && pairs[h * 3 + 1] === b) return pairs[h * 3 + 2];
    }
  }
}

/** Binary min-heap of numbers with a fixed capacity. */
class MinHeap {
  private readonly items: Float64Array;
  size = 0;

  constructor(capacity: number) {
    this.items = new Float64Array(Math.max(1, capacity));
  }

  push(x: number): void {
    const a = this.items;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent] <= x) break;
      a[i] = a[parent];
      i = parent;
    }
    a[i] = x;
  }

  /** Adds without ordering; call heapify() before the next push or pop. */
  append(x: number): void {
    this.items[this.size++] = x;
  }

  /** Restores the heap order after append() calls, in O(n). */
  heapify(): void {
    for (let i = (this.size >> 1) - 1; i >= 0; i--) this.siftDown(i, this.items[i]);
  }

  pop(): number {
    const top = this.items[0];
    const last = this.items[--this.size];
    if (this.size > 0) this.siftDown(0, last);
    return top;
  }

  /** Places x at index i or below, moving smaller children up. */
  private siftDown(i: number, x: number): void {
    const a = this.items;
    const size = this.size;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && a[child + 1] < a[child]) child++;
      if (a[child] >= x) break;
      a[i] = a[child];
      i = child;
    }
    a[i] = x;
  }
}
