// Reads tokenizer files' bytes straight into tokenizer tables: a strict JSON scan that never builds the 50k-key vocab object.
import {
  charToByteTable,
  EOS_TOKEN,
  insertPair,
  lookupPair,
  newPairTable,
  sharedInt32,
  sharedUint8,
  type TokenizerTables,
} from './tables.js';

/**
 * The fast path for the common case: a well-formed GPT-2 `tokenizer.json` (UTF-8, no surprises) becomes
 * tables without JSON.parse. Anything unusual (invalid JSON or UTF-8, duplicate keys, an id or merge that
 * does not check out, an unsupported setting) gives null: the caller then takes the general path
 * (JSON.parse + buildTokenizerTables), which accepts or rejects the file with its usual messages. Both
 * paths give identical tables for every file the fast one accepts.
 */
export function tablesFromTokenizerJson(bytes: Uint8Array): TokenizerTables | null {
  try {
    return new Scanner(bytes).tokenizerJson();
  } catch {
    return null;
  }
}

/** The same for `vocab.json` + `merges.txt` (special tokens: `<|endoftext|>`, as the general path gives). */
export function tablesFromVocabAndMerges(
  vocabJson: Uint8Array,
  mergesTxt: Uint8Array,
): TokenizerTables | null {
  try {
    return new Scanner(vocabJson).vocabJsonAndMerges(mergesTxt);
  } catch {
    return null;
  }
}

/** Thrown inside the scan when the general path must decide; never escapes this module. */
class Unusual extends Error {}

function unusual(): never {
  throw new Unusual();
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

/** A growable list of UTF-16 code units. */
class Units {
  data = new Uint16Array(1 << 16);
  length = 0;

  push(u: number): void {
    if (this.length === this.data.length) this.grow();
    this.data[this.length++] = u;
  }

  grow(): void {
    const grown = new Uint16Array(this.data.length * 2);
    grown.set(this.data);
    this.data = grown;
  }

  text(from: number, to: number): string {
    let s = '';
    for (let i = from; i < to; i += 8192)
      s += String.fromCharCode(...this.data.subarray(i, Math.min(to, i + 8192)));
    return s;
  }
}

/** A growable list of int32. */
class Ints {
  data = new Int32Array(1 << 12);
  length = 0;

  push(v: number): void {
    if (this.length === this.data.length) {
      const grown = new Int32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = v;
  }
}

/** FNV-1a over code units, with a final mix so low bits spread. */
function hashUnits(units: Uint16Array, from: number, to: number, seed = 0x811c9dc5): number {
  let h = seed;
  for (let i = from; i < to; i++) h = Math.imul(h ^ units[i], 0x01000193);
  return h;
}

function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  return (h ^ (h >>> 13)) >>> 0;
}

class Scanner {
  private at = 0;
  /** Every vocab key's code units, one after another; key k is keyUnits[keyStart[k] .. keyStart[k+1]). */
  private readonly keyUnits = new Units();
  private readonly keyStart = new Ints();
  private readonly keyId = new Ints();
  /** Open addressing: key index + 1, 0 = empty. */
  private table = new Int32Array(1 << 17);
  /** Merges as code units: merge m is (mergeUnits[s[3m] .. s[3m+1]), mergeUnits[s[3m+1] .. s[3m+2])). */
  private readonly mergeUnits = new Units();
  private readonly mergeSpans = new Ints();
  private sawVocab = false;
  private sawMerges = false;
  /** Scratch for strings read outside the vocab and merges. */
  private readonly scratch = new Units();

  constructor(private readonly bytes: Uint8Array) {
    this.keyStart.push(0);
  }

  /** tokenizer.json: the checks parseTokenizerJson makes, then the tables. */
  tokenizerJson(): TokenizerTables {
    this.ws();
    if (this.bytes[this.at] !== 0x7b) unusual();
    const root = this.object((key) => {
      if (key !== 'model') return null;
      if (this.peek() !== 0x7b) unusual();
      return () => this.model();
    });
    this.end();
    const model = root.model as Record<string, unknown> | undefined;
    if (!isObject(model) || !this.sawVocab || !this.sawMerges) unusual();
    if (model.type !== undefined && model.type !== 'BPE') unusual();
    if (!isGpt2PreTokenizer(root.pre_tokenizer)) unusual();
    if (root.normalizer !== null && root.normalizer !== undefined) unusual();
    if (this.keyId.length === 0) unusual();
    const added = root.added_tokens ?? [];
    if (!Array.isArray(added)) unusual();
    const specials: string[] = [];
    for (const t of added) {
      if (!isObject(t) || typeof t.content !== 'string' || t.content === '' || !Number.isInteger(t.id))
        unusual();
      if (t.single_word === true || t.lstrip === true || t.rstrip === true) unusual();
      const content = t.content as string;
      // The general path looks the content up in a plain object, where these names mean something else.
      if (content in Object.prototype) unusual();
      const known = this.findText(content);
      if (known < 0) this.addKey(content, t.id as number);
      else if (this.keyId.data[known] !== t.id) unusual();
      specials.push(content);
    }
    return this.tables(specials);
  }

  /** vocab.json (an object of token → id) and merges.txt. */
  vocabJsonAndMerges(mergesTxt: Uint8Array): TokenizerTables {
    this.ws();
    if (this.bytes[this.at] !== 0x7b) unusual();
    this.vocab();
    this.end();
    if (this.keyId.length === 0) unusual();
    this.mergesTxt(mergesTxt);
    return this.tables([EOS_TOKEN]);
  }

  private model(): Record<string, unknown> {
    return this.object((key) => {
      if (key === 'vocab') {
        if (this.sawVocab || this.peek() !== 0x7b) unusual();
        this.sawVocab = true;
        return () => this.vocab();
      }
      if (key === 'merges') {
        if (this.sawMerges || this.peek() !== 0x5b) unusual();
        this.sawMerges = true;
        return () => this.merges();
      }
      return null;
    });
  }

  /** `{"token": id, ...}` straight into the key table. */
  private vocab(): null {
    const b = this.bytes;
    this.at++; // {
    this.ws();
    if (b[this.at] === 0x7d) {
      this.at++;
      return null;
    }
    for (;;) {
      if (b[this.at] !== QUOTE) unusual();
      const start = this.keyUnits.length;
      this.readString(this.keyUnits);
      if (this.keyUnits.length === start) unusual();
      this.ws();
      if (b[this.at++] !== 0x3a) unusual();
      this.ws();
      const id = this.index();
      this.commitKey(start, id);
      this.ws();
      const c = b[this.at++];
      if (c === 0x7d) return null;
      if (c !== 0x2c) unusual();
      this.ws();
    }
  }

  /** `[["a", "b"], ...]` or `["a b", ...]`, kept as code units until the vocab is complete. */
  private merges(): null {
    const b = this.bytes;
    const units = this.mergeUnits;
    this.at++; // [
    this.ws();
    if (b[this.at] === 0x5d) {
      this.at++;
      return null;
    }
    for (;;) {
      const start = units.length;
      if (b[this.at] === QUOTE) {
        this.readString(units);
        let space = -1;
        for (let i = start; i < units.length; i++) {
          if (units.data[i] === 0x20) {
            if (space >= 0) unusual();
            space = i;
          }
        }
        if (space <= start || space === units.length - 1) unusual();
        // Drop the space: the pair is (start..space, space..end) once the rest shifts left by one.
        units.data.copyWithin(space, space + 1, units.length);
        units.length--;
        this.mergeSpans.push(start);
        this.mergeSpans.push(space);
        this.mergeSpans.push(units.length);
      } else if (b[this.at] === 0x5b) {
        this.at++;
        this.ws();
        if (b[this.at] !== QUOTE) unusual();
        this.readString(units);
        const middle = units.length;
        this.ws();
        if (b[this.at++] !== 0x2c) unusual();
        this.ws();
        if (b[this.at] !== QUOTE) unusual();
        this.readString(units);
        this.ws();
        if (b[this.at++] !== 0x5d) unusual();
        if (middle === start || units.length === middle) unusual();
        this.mergeSpans.push(start);
        this.mergeSpans.push(middle);
        this.mergeSpans.push(units.length);
      } else {
        unusual();
      }
      this.ws();
      const c = b[this.at++];
      if (c === 0x5d) return null;
      if (c !== 0x2c) unusual();
      this.ws();
    }
  }

  /** merges.txt: an optional "#version" line, then "left right" lines; as parseMergesTxt reads it. */
  private mergesTxt(text: Uint8Array): void {
    const units = this.mergeUnits;
    let lineStart = 0;
    let first = true;
    while (lineStart < text.length) {
      let lineEnd = text.indexOf(0x0a, lineStart);
      const last = lineEnd < 0;
      if (last) lineEnd = text.length;
      let contentEnd = lineEnd;
      if (contentEnd > lineStart && text[contentEnd - 1] === 0x0d) contentEnd--;
      const isVersion =
        first &&
        contentEnd - lineStart >= 8 &&
        String.fromCharCode(...text.subarray(lineStart, lineStart + 8)) === '#version';
      first = false;
      if (!isVersion) {
        const start = units.length;
        let space = -1;
        for (let i = lineStart; i < contentEnd; ) {
          if (text[i] === 0x20) {
            if (space >= 0) unusual();
            space = units.length;
            i++;
            continue;
          }
          i = decodeUtf8(text, i, contentEnd, units);
        }
        if (space <= start || space === units.length) unusual();
        this.mergeSpans.push(start);
        this.mergeSpans.push(space);
        this.mergeSpans.push(units.length);
      }
      lineStart = lineEnd + 1;
      // A trailing newline ends the file; the empty "line" after it is not a merge.
      if (!last && lineStart === text.length) break;
    }
  }

  /** The tables, checked as buildTokenizerTables checks a vocabulary and its merges. */
  private tables(specials: string[]): TokenizerTables {
    const n = this.keyId.length;
    const ids = this.keyId.data;
    const entryOf = new Int32Array(n).fill(-1);
    for (let k = 0; k < n; k++) {
      const id = ids[k];
      if (id >= n || entryOf[id] >= 0) unusual();
      entryOf[id] = k;
    }
    const charToByte = charToByteTable();
    const keyUnits = this.keyUnits.data;
    const keyStart = this.keyStart.data;

    const byteIds = sharedInt32(256);
    const one = new Uint16Array(1);
    for (let c = 0; c < charToByte.length; c++) {
      const b = charToByte[c];
      if (b < 0) continue;
      one[0] = c;
      const k = this.find(one, 0, 1);
      if (k < 0) unusual();
      byteIds[b] = ids[k];
    }
    const eos = this.findText(EOS_TOKEN);
    if (eos < 0) unusual();

    const merges = this.mergeSpans.length / 3;
    if (merges >= 2 ** 21) unusual();
    const pairs = newPairTable(merges);
    const mergeResult = sharedInt32(merges);
    const spans = this.mergeSpans.data;
    const mu = this.mergeUnits.data;
    for (let rank = 0; rank < merges; rank++) {
      const s = spans[rank * 3];
      const m = spans[rank * 3 + 1];
      const e = spans[rank * 3 + 2];
      const a = this.find(mu, s, m);
      const b = this.find(mu, m, e);
      const merged = this.find(mu, s, e);
      if (a < 0 || b < 0 || merged < 0) unusual();
      if (lookupPair(pairs, ids[a], ids[b]) >= 0) unusual();
      insertPair(pairs, ids[a], ids[b], rank);
      mergeResult[rank] = ids[merged];
    }

    // One pass: byte-level characters become their bytes; a token with any other character is rewritten
    // as its UTF-8 (at most 3 bytes a code unit), as buildTokenizerTables does.
    const offsets = sharedInt32(n + 1);
    const textTokens: Array<[number, string]> = [];
    const encoder = new TextEncoder();
    // Room for every unit still to come as one byte: a byte-level token never needs more.
    let unitsLeft = this.keyUnits.length;
    let scratch = new Uint8Array(unitsLeft + 64);
    let at = 0;
    for (let id = 0; id < n; id++) {
      const k = entryOf[id];
      const from = keyStart[k];
      const to = keyStart[k + 1];
      unitsLeft -= to - from;
      const begin = at;
      let i = from;
      for (; i < to; i++) {
        const c = keyUnits[i];
        const byte = c < 512 ? charToByte[c] : -1;
        if (byte < 0) break;
        scratch[at++] = byte;
      }
      if (i < to) {
        const text = this.keyUnits.text(from, to);
        const encoded = encoder.encode(text);
        at = begin;
        if (at + encoded.length + unitsLeft > scratch.length) {
          const grown = new Uint8Array((at + encoded.length + unitsLeft) * 2);
          grown.set(scratch.subarray(0, at));
          scratch = grown;
        }
        scratch.set(encoded, at);
        at += encoded.length;
        textTokens.push([id, text]);
      }
      offsets[id + 1] = at;
    }
    const bytes = sharedUint8(at);
    bytes.set(scratch.subarray(0, at));

    const specialTokens: Array<[string, number]> = [];
    for (const s of specials) {
      const k = this.findText(s);
      if (k < 0) unusual();
      specialTokens.push([s, ids[k]]);
    }
    return {
      vocabSize: n,
      eosTokenId: ids[eos],
      byteIds,
      pairs,
      mergeResult,
      bytes,
      offsets,
      textTokens,
      specialTokens,
    };
  }

  /** Index of the key whose code units are units[from..to), or -1. */
  private find(units: Uint16Array, from: number, to: number): number {
    const table = this.table;
    const mask = table.length - 1;
    const keyUnits = this.keyUnits.data;
    const keyStart = this.keyStart.data;
    const len = to - from;
    for (let h = mix(hashUnits(units, from, to)) & mask; ; h = (h + 1) & mask) {
      const k = table[h] - 1;
      if (k < 0) return -1;
      const s = keyStart[k];
      if (keyStart[k + 1] - s !== len) continue;
      let same = true;
      for (let i = 0; i < len && same; i++) same = keyUnits[s + i] === units[from + i];
      if (same) return k;
    }
  }

  private findText(text: string): number {
    const units = new Uint16Array(text.length);
    for (let i = 0; i < text.length; i++) units[i] = text.charCodeAt(i);
    return this.find(units, 0, units.length);
  }

  /** Adds the key just read (keyUnits[start..]) with its id; a key seen twice is left to the general path. */
  private commitKey(start: number, id: number): void {
    const end = this.keyUnits.length;
    const units = this.keyUnits.data;
    const keyStart = this.keyStart.data;
    const table = this.table;
    const mask = table.length - 1;
    const len = end - start;
    // One probe both rejects a repeated key and finds the free slot for a new one.
    let h = mix(hashUnits(units, start, end)) & mask;
    for (; table[h] !== 0; h = (h + 1) & mask) {
      const k = table[h] - 1;
      const s = keyStart[k];
      if (keyStart[k + 1] - s !== len) continue;
      let same = true;
      for (let i = 0; i < len && same; i++) same = units[s + i] === units[start + i];
      if (same) unusual();
    }
    this.keyStart.push(end);
    this.keyId.push(id);
    table[h] = this.keyId.length;
    if (this.keyId.length * 2 > table.length) this.rehash();
  }

  private addKey(text: string, id: number): void {
    if (id < 0 || id > 0x7fffffff) unusual();
    const start = this.keyUnits.length;
    for (let i = 0; i < text.length; i++) this.keyUnits.push(text.charCodeAt(i));
    this.commitKey(start, id);
  }

  private place(k: number): void {
    const table = this.table;
    const mask = table.length - 1;
    const s = this.keyStart.data[k];
    let h = mix(hashUnits(this.keyUnits.data, s, this.keyStart.data[k + 1])) & mask;
    while (table[h] !== 0) h = (h + 1) & mask;
    table[h] = k + 1;
  }

  private rehash(): void {
    this.table = new Int32Array(this.table.length * 2);
    for (let k = 0; k < this.keyId.length; k++) this.place(k);
  }

  /** A non-negative integer id written as plain digits (anything else goes to the general path). */
  private index(): number {
    const b = this.bytes;
    let c = b[this.at];
    if (c < 0x30 || c > 0x39) unusual();
    let value = 0;
    const start = this.at;
    while (c >= 0x30 && c <= 0x39) {
      value = value * 10 + (c - 0x30);
      c = b[++this.at];
    }
    if ((b[start] === 0x30 && this.at - start > 1) || value > 0x7fffffff) unusual();
    if (c === 0x2e || c === 0x65 || c === 0x45) unusual();
    return value;
  }

  /**
   * An object; `special(key)` may return a reader for that key's value (called with `at` on the value).
   * Other values are read generically. A repeated key keeps its last value, as JSON.parse does.
   */
  private object(special: (key: string) => (() => unknown) | null): Record<string, unknown> {
    const b = this.bytes;
    const out: Record<string, unknown> = {};
    this.at++; // {
    this.ws();
    if (b[this.at] === 0x7d) {
      this.at++;
      return out;
    }
    for (;;) {
      if (b[this.at] !== QUOTE) unusual();
      const key = this.string();
      if (key === '__proto__') unusual();
      this.ws();
      if (b[this.at++] !== 0x3a) unusual();
      this.ws();
      const reader = special(key);
      out[key] = reader ? reader() : this.value();
      this.ws();
      const c = b[this.at++];
      if (c === 0x7d) return out;
      if (c !== 0x2c) unusual();
      this.ws();
    }
  }

  private value(): unknown {
    const b = this.bytes;
    const c = b[this.at];
    if (c === 0x7b) return this.object(() => null);
    if (c === 0x5b) {
      const out: unknown[] = [];
      this.at++;
      this.ws();
      if (b[this.at] === 0x5d) {
        this.at++;
        return out;
      }
      for (;;) {
        out.push(this.value());
        this.ws();
        const d = b[this.at++];
        if (d === 0x5d) return out;
        if (d !== 0x2c) unusual();
        this.ws();
      }
    }
    if (c === QUOTE) return this.string();
    if (this.literal('true')) return true;
    if (this.literal('false')) return false;
    if (this.literal('null')) return null;
    const start = this.at;
    while (this.at < b.length) {
      const d = b[this.at];
      if ((d >= 0x30 && d <= 0x39) || d === 0x2d || d === 0x2b || d === 0x2e || d === 0x65 || d === 0x45)
        this.at++;
      else break;
    }
    const text = String.fromCharCode(...b.subarray(start, this.at));
    if (!NUMBER.test(text)) unusual();
    return Number(text);
  }

  private literal(word: string): boolean {
    for (let i = 0; i < word.length; i++) if (this.bytes[this.at + i] !== word.charCodeAt(i)) return false;
    this.at += word.length;
    return true;
  }

  private string(): string {
    const s = this.scratch;
    s.length = 0;
    this.readString(s);
    return s.text(0, s.length);
  }

  /**
   * Reads the JSON string at `at` (on its opening quote), appending its code units to `out`. The loop
   * handles ASCII and two-byte characters inline (nearly every byte of a GPT-2 vocabulary): this code
   * runs cold, once per start, so every call saved per byte counts.
   */
  private readString(out: Units): void {
    const b = this.bytes;
    let i = this.at + 1;
    let data = out.data;
    let n = out.length;
    for (;;) {
      if (n + 2 > data.length) {
        out.length = n;
        out.grow();
        data = out.data;
      }
      const c = b[i];
      if (c === QUOTE) break;
      if (c >= 0x20 && c < 0x80 && c !== BACKSLASH) {
        data[n++] = c;
        i++;
        continue;
      }
      if ((c & 0xe0) === 0xc0 && (b[i + 1] & 0xc0) === 0x80 && c >= 0xc2) {
        data[n++] = ((c & 0x1f) << 6) | (b[i + 1] & 0x3f);
        i += 2;
        continue;
      }
      out.length = n;
      i = this.readRare(i, out);
      data = out.data;
      n = out.length;
    }
    out.length = n;
    this.at = i + 1;
  }

  /** One escape sequence or longer UTF-8 character at bytes[i] (or the end of input: unusual); returns the next index. */
  private readRare(i: number, out: Units): number {
    const b = this.bytes;
    if (i >= b.length) unusual();
    const c = b[i];
    if (c === BACKSLASH) {
      const e = b[i + 1];
      if (e === QUOTE || e === BACKSLASH || e === 0x2f) out.push(e);
      else if (e === 0x62) out.push(0x08);
      else if (e === 0x66) out.push(0x0c);
      else if (e === 0x6e) out.push(0x0a);
      else if (e === 0x72) out.push(0x0d);
      else if (e === 0x74) out.push(0x09);
      else if (e === 0x75) {
        let u = 0;
        for (let j = 2; j < 6; j++) {
          const h = b[i + j];
          const d =
            h >= 0x30 && h <= 0x39
              ? h - 0x30
              : h >= 0x61 && h <= 0x66
                ? h - 87
                : h >= 0x41 && h <= 0x46
                  ? h - 55
                  : -1;
          if (d < 0) unusual();
          u = u * 16 + d;
        }
        out.push(u);
        return i + 6;
      } else unusual();
      return i + 2;
    }
    if (c < 0x20) unusual();
    return decodeUtf8(b, i, b.length, out);
  }

  private peek(): number {
    return this.bytes[this.at];
  }

  private ws(): void {
    const b = this.bytes;
    let c = b[this.at];
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++this.at];
  }

  private end(): void {
    this.ws();
    if (this.at !== this.bytes.length) unusual();
  }
}

/** Decodes one UTF-8 character at b[i] (strictly: no overlong forms, surrogates or truncation); returns the next index. */
function decodeUtf8(b: Uint8Array, i: number, end: number, out: Units): number {
  const c = b[i];
  if (c < 0x80) {
    out.push(c);
    return i + 1;
  }
  const cont = (j: number): number => {
    if (j >= end || (b[j] & 0xc0) !== 0x80) unusual();
    return b[j] & 0x3f;
  };
  if ((c & 0xe0) === 0xc0) {
    const cp = ((c & 0x1f) << 6) | cont(i + 1);
    if (cp < 0x80) unusual();
    out.push(cp);
    return i + 2;
  }
  if ((c & 0xf0) === 0xe0) {
    const cp = ((c & 0x0f) << 12) | (cont(i + 1) << 6) | cont(i + 2);
    if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)) unusual();
    out.push(cp);
    return i + 3;
  }
  if ((c & 0xf8) === 0xf0) {
    const cp = ((c & 0x07) << 18) | (cont(i + 1) << 12) | (cont(i + 2) << 6) | cont(i + 3);
    if (cp < 0x10000 || cp > 0x10ffff) unusual();
    out.push(0xd800 + ((cp - 0x10000) >> 10));
    out.push(0xdc00 + ((cp - 0x10000) & 0x3ff));
    return i + 4;
  }
  return unusual();
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** tokenizer.json's pre_tokenizer is GPT-2's: ByteLevel, no prefix space, the split regex on. */
export function isGpt2PreTokenizer(pre: unknown): boolean {
  return (
    isObject(pre) && pre.type === 'ByteLevel' && pre.add_prefix_space !== true && pre.use_regex !== false
  );
}
