// GGUF v3 for llama.cpp / Ollama / node-llama-cpp: export of our GPT-2 (F32, or Q8_0 matrices), the reader,
// and loading a GPT-2 GGUF (F32, F16, BF16, Q8_0 tensors) for our engine, checked against its own header.
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { GPTConfig } from '../engine/config.js';
import { validateConfig } from '../engine/config.js';
import { f16Bits, halfToFloat } from '../engine/formats/half.js';
import { Q8_BLOCK, Q8_BLOCK_BYTES, q8Eligible, quantizeQ8_0 } from '../engine/formats/q8-0.js';
import type { ModelSource, TensorData } from '../engine/inference.js';
import { parameterLayout, type TensorSpec } from '../engine/layout.js';
import { EOS_TOKEN } from '../tokenizer/gpt2-bpe.js';
import { writeFileAtomic } from './atomic.js';
import type { TokenizerData } from './tokenizer-files.js';

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types (gguf_type). */
export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** ggml tensor types we write or read. */
export const GgmlType = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;

/** general.file_type values (llama_ftype) for what we write: all F32, mostly F16, mostly Q8_0. */
const FILE_TYPE = { f32: 0, f16: 1, q8_0: 7 } as const;

/** Bytes of a tensor of `type` with ggml dims `dims`, or null for a type this reader does not know. */
export function ggmlTensorBytes(type: number, dims: readonly number[]): number | null {
  const count = dims.reduce((a, b) => a * b, 1);
  if (type === GgmlType.F32) return 4 * count;
  if (type === GgmlType.F16 || type === GgmlType.BF16) return 2 * count;
  if (type === GgmlType.Q8_0)
    return dims.length > 0 && dims[0] % Q8_BLOCK === 0 ? (count / Q8_BLOCK) * Q8_BLOCK_BYTES : null;
  return null;
}

const TYPE_NAMES: Record<number, string> = { 0: 'F32', 1: 'F16', 8: 'Q8_0', 30: 'BF16' };

function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `ggml type ${type}`;
}

/** llama.cpp token types. */
const TOKEN_TYPE_NORMAL = 1;
const TOKEN_TYPE_CONTROL = 3;

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufScalar[];

interface TypedValue {
  type: number;
  value: GgufValue;
  /** Element type when `type` is ARRAY. */
  itemType?: number;
}

export interface GgufTensorInfo {
  name: string;
  /** ggml dims: ne[0] is the innermost (contiguous) dimension, i.e. the reverse of a row-major shape. */
  dims: number[];
  type: number;
  /** Byte offset inside the data section. */
  offset: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Byte offset of the data section from the start of the file. */
  dataOffset: number;
  /** F32 data of one tensor (a copy), in ggml order (row-major over the reversed dims). */
  tensorData(name: string): Float32Array;
  /** The stored bytes of one tensor (a view of the file's bytes, or read from the file), whatever its type. */
  tensorBytes(name: string): Uint8Array;
  /** Bytes [start, start + into.length) of one tensor's stored bytes into `into`. */
  tensorRange(name: string, start: number, into: Uint8Array): void;
}

export interface GgufExportOptions {
  config: GPTConfig;
  params: Float32Array;
  tokenizerData: TokenizerData;
  /** general.name (default "tiny-llm"). */
  name?: string;
  /**
   * The matrices (the four products of each block, the token embedding and an untied output) as 'q8_0' (where
   * their rows split into 32-blocks, as llama.cpp's own Q8_0 files) or 'f16'; the rest stays F32.
   */
  quantize?: 'q8_0' | 'f16';
}

/** Whether a layout tensor is one of the matrices a quantised export stores in the smaller type. */
function isMatrix(spec: TensorSpec): boolean {
  return spec.conv1d || spec.hfName === 'transformer.wte.weight' || spec.hfName === 'lm_head.weight';
}

/** Serializes the model as GGUF bytes (see exportGguf). */
export function ggufBytes(options: GgufExportOptions): Uint8Array {
  const config = validateConfig(options.config);
  const layout = parameterLayout(config);
  if (options.params.length !== layout.total) {
    throw new Error(
      `GGUF export: params has ${options.params.length} floats, the layout needs ${layout.total}`,
    );
  }
  const { tokens, tokenTypes } = tokenTable(options.tokenizerData, config.vocabSize);
  const merges = options.tokenizerData.merges.map(([a, b]) => `${a} ${b}`);

  const u32 = (value: number): TypedValue => ({ type: GgufType.UINT32, value });
  const str = (value: string): TypedValue => ({ type: GgufType.STRING, value });
  const metadata: Array<[string, TypedValue]> = [
    ['general.architecture', str('gpt2')],
    ['general.name', str(options.name ?? 'tiny-llm')],
    ['general.file_type', u32(FILE_TYPE[options.quantize ?? 'f32'])],
    ['general.alignment', u32(GGUF_ALIGNMENT)],
    ['gpt2.context_length', u32(config.nPositions)],
    ['gpt2.embedding_length', u32(config.nEmbd)],
    ['gpt2.feed_forward_length', u32(4 * config.nEmbd)],
    ['gpt2.block_count', u32(config.nLayer)],
    ['gpt2.attention.head_count', u32(config.nHead)],
    ['gpt2.attention.layer_norm_epsilon', { type: GgufType.FLOAT32, value: config.layerNormEpsilon }],
    ['tokenizer.ggml.model', str('gpt2')],
    ['tokenizer.ggml.pre', str('gpt-2')],
    ['tokenizer.ggml.tokens', { type: GgufType.ARRAY, itemType: GgufType.STRING, value: tokens }],
    ['tokenizer.ggml.token_type', { type: GgufType.ARRAY, itemType: GgufType.INT32, value: tokenTypes }],
    ['tokenizer.ggml.merges', { type: GgufType.ARRAY, itemType: GgufType.STRING, value: merges }],
    ['tokenizer.ggml.bos_token_id', u32(config.bosTokenId)],
    ['tokenizer.ggml.eos_token_id', u32(config.eosTokenId)],
    // HF's GPT-2 tokenizer adds no BOS; llama.cpp must not either, or prompts would differ.
    ['tokenizer.ggml.add_bos_token', { type: GgufType.BOOL, value: false }],
  ];

  // Tensors in layout order; Conv1D weights [in, out] become [out, in] (what ggml_mul_mat expects).
  const tensors: Array<{ name: string; dims: number[]; type: number; data: Uint8Array; offset: number }> = [];
  let dataSize = 0;
  for (const t of layout.tensors) {
    const src = options.params.subarray(t.offset, t.offset + t.size);
    const rowMajorShape = t.conv1d ? [t.shape[1], t.shape[0]] : t.shape;
    let type: number = GgmlType.F32;
    let data: Uint8Array;
    const [rows, cols] = rowMajorShape;
    if (options.quantize === 'q8_0' && isMatrix(t) && q8Eligible(cols)) {
      type = GgmlType.Q8_0;
      data = t.conv1d ? quantizeQ8_0(src, rows, cols, 1, rows) : quantizeQ8_0(src, rows, cols, cols, 1);
    } else {
      const f = t.conv1d ? transpose(src, t.shape[0], t.shape[1]) : src;
      if (options.quantize === 'f16' && isMatrix(t)) {
        type = GgmlType.F16;
        const h = Uint16Array.from(f, f16Bits);
        data = new Uint8Array(h.buffer);
      } else data = new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
    }
    tensors.push({ name: t.ggufName, dims: [...rowMajorShape].reverse(), type, data, offset: dataSize });
    dataSize = alignUp(dataSize + data.byteLength, GGUF_ALIGNMENT);
  }

  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, value] of metadata) {
    w.string(key);
    w.u32(value.type);
    writeValue(w, value);
  }
  for (const t of tensors) {
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(t.offset);
  }
  const header = w.finish();
  const dataOffset = alignUp(header.byteLength, GGUF_ALIGNMENT);
  const out = new Uint8Array(dataOffset + dataSize);
  out.set(header, 0);
  for (const t of tensors) out.set(t.data, dataOffset + t.offset);
  return out;
}

/**
 * Writes a GGUF v3 file llama.cpp loads as architecture `gpt2` (atomically). Tied models store no
 * `output.weight`: llama.cpp's gpt2 loader then uses `token_embd.weight` as the output projection.
 */
export async function exportGguf(file: string, options: GgufExportOptions): Promise<void> {
  await writeFileAtomic(file, ggufBytes(options));
}

/** Tokens in id order with their llama.cpp types; the ids must cover 0..vocabSize-1 exactly. */
function tokenTable(data: TokenizerData, vocabSize: number): { tokens: string[]; tokenTypes: number[] } {
  const tokens: string[] = new Array(vocabSize);
  for (const [token, id] of Object.entries(data.vocab)) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new Error(
        `GGUF export: token ${JSON.stringify(token)} has id ${id}, outside the model's vocab of ${vocabSize}`,
      );
    }
    if (tokens[id] !== undefined) throw new Error(`GGUF export: id ${id} is used by two tokens`);
    tokens[id] = token;
  }
  for (let id = 0; id < vocabSize; id++) {
    if (tokens[id] === undefined) {
      throw new Error(`GGUF export: the tokenizer has no token with id ${id} (model vocab is ${vocabSize})`);
    }
  }
  const control = new Set(data.specialTokens ?? [EOS_TOKEN]);
  return { tokens, tokenTypes: tokens.map((t) => (control.has(t) ? TOKEN_TYPE_CONTROL : TOKEN_TYPE_NORMAL)) };
}

/** [rows, cols] row-major → [cols, rows] row-major. */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  }
  return out;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function writeValue(w: ByteWriter, v: TypedValue): void {
  if (v.type === GgufType.ARRAY) {
    const items = v.value as GgufScalar[];
    w.u32(v.itemType!);
    w.u64(items.length);
    for (const item of items) writeScalar(w, v.itemType!, item);
  } else {
    writeScalar(w, v.type, v.value as GgufScalar);
  }
}

function writeScalar(w: ByteWriter, type: number, value: GgufScalar): void {
  if (type === GgufType.UINT32) w.u32(value as number);
  else if (type === GgufType.INT32) w.i32(value as number);
  else if (type === GgufType.FLOAT32) w.f32(value as number);
  else if (type === GgufType.BOOL) w.u8(value ? 1 : 0);
  else if (type === GgufType.STRING) w.string(value as string);
  else throw new Error(`GGUF export: no writer for value type ${type}`);
}

/** Growable little-endian byte buffer. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  private pos = 0;
  private readonly encoder = new TextEncoder();

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.byteLength) return;
    let size = this.buf.byteLength * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.pos, v);
    this.pos += 1;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.pos, v, true);
    this.pos += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.pos, v, true);
    this.pos += 4;
  }
  u64(v: number): void {
    this.reserve(8);
    this.view.setBigUint64(this.pos, BigInt(v), true);
    this.pos += 8;
  }
  string(s: string): void {
    const bytes = this.encoder.encode(s);
    this.u64(bytes.byteLength);
    this.reserve(bytes.byteLength);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.byteLength;
  }
  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

/** Reads a GGUF file's metadata and tensor table (and gives access to F32 tensor data). */
export async function readGgufHeader(file: string): Promise<GgufFile> {
  return parseGguf(new Uint8Array(await readFile(file)), file);
}

/** The header runs past the bytes given to parseGguf, but not past the file: read more of it. */
class GgufShortPrefix extends Error {}

/**
 * Parses GGUF v2/v3 bytes; errors name `file` and what is wrong. `buf` may be the file's first bytes only when
 * `fileSize` says how long the file is (then a header longer than `buf` throws GgufShortPrefix, and tensor
 * data is not in `buf`: see openGgufFile).
 */
export function parseGguf(buf: Uint8Array, file: string, fileSize = buf.byteLength): GgufFile {
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  const need = (n: number, what: string) => {
    if (pos + n > buf.byteLength) {
      if (pos + n <= fileSize) throw new GgufShortPrefix();
      fail(`truncated while reading ${what} at byte ${pos}`);
    }
  };
  const u8 = (what: string) => {
    need(1, what);
    return view.getUint8(pos++);
  };
  const u32 = (what: string) => {
    need(4, what);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (what: string) => {
    need(8, what);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${v} is too large`);
    return Number(v);
  };
  const string = (what: string) => {
    const n = u64(`${what} length`);
    need(n, what);
    let s = '';
    try {
      s = decoder.decode(buf.subarray(pos, pos + n));
    } catch {
      fail(`${what} is not valid UTF-8`);
    }
    pos += n;
    return s;
  };
  const scalar = (type: number, what: string): GgufScalar => {
    switch (type) {
      case GgufType.UINT8:
        return u8(what);
      case GgufType.INT8:
        need(1, what);
        return view.getInt8(pos++);
      case GgufType.UINT16:
        need(2, what);
        pos += 2;
        return view.getUint16(pos - 2, true);
      case GgufType.INT16:
        need(2, what);
        pos += 2;
        return view.getInt16(pos - 2, true);
      case GgufType.UINT32:
        return u32(what);
      case GgufType.INT32:
        need(4, what);
        pos += 4;
        return view.getInt32(pos - 4, true);
      case GgufType.FLOAT32:
        need(4, what);
        pos += 4;
        return view.getFloat32(pos - 4, true);
      case GgufType.BOOL:
        return u8(what) !== 0;
      case GgufType.STRING:
        return string(what);
      case GgufType.UINT64:
        need(8, what);
        pos += 8;
        return view.getBigUint64(pos - 8, true);
      case GgufType.INT64:
        need(8, what);
        pos += 8;
        return view.getBigInt64(pos - 8, true);
      case GgufType.FLOAT64:
        need(8, what);
        pos += 8;
        return view.getFloat64(pos - 8, true);
      default:
        return fail(`${what} has unknown value type ${type}`);
    }
  };

  if (fileSize < 24) fail(`truncated: ${fileSize} bytes is less than a GGUF header`);
  if (u32('magic') !== GGUF_MAGIC) fail('not a GGUF file (bad magic)');
  const version = u32('version');
  if (version !== 2 && version !== 3) fail(`unsupported GGUF version ${version}`);
  const tensorCount = u64('tensor count');
  const kvCount = u64('metadata count');
  // Every entry takes at least 8 bytes, so counts beyond the file size are lies, not allocations to attempt.
  if (tensorCount > fileSize / 8 || kvCount > fileSize / 8)
    fail('tensor or metadata count exceeds the file size');

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = string(`metadata key ${i}`);
    const type = u32(`type of ${key}`);
    if (type === GgufType.ARRAY) {
      const itemType = u32(`item type of ${key}`);
      const n = u64(`length of ${key}`);
      if (n > fileSize - pos) fail(`${key}: array length ${n} exceeds the file size`);
      const items: GgufScalar[] = new Array(n);
      for (let j = 0; j < n; j++) items[j] = scalar(itemType, `${key}[${j}]`);
      metadata.set(key, items);
    } else {
      metadata.set(key, scalar(type, key));
    }
  }

  const tensors: GgufTensorInfo[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = string(`tensor ${i} name`);
    if (seen.has(name)) fail(`tensor ${name} is listed twice`);
    seen.add(name);
    const nDims = u32(`${name} dimension count`);
    if (nDims > 4) fail(`tensor ${name} has ${nDims} dimensions (ggml allows at most 4)`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(u64(`${name} dim ${d}`));
    const type = u32(`${name} type`);
    const offset = u64(`${name} offset`);
    tensors.push({ name, dims, type, offset });
  }

  const alignmentValue = metadata.get('general.alignment');
  const alignment = typeof alignmentValue === 'number' ? alignmentValue : GGUF_ALIGNMENT;
  const dataOffset = alignUp(pos, alignment);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  if (!Number.isInteger(alignment) || alignment < 1 || alignment > 1 << 16)
    fail(`general.alignment ${alignment} is not a usable alignment`);
  for (const t of tensors) {
    if (t.offset % alignment !== 0)
      fail(`tensor ${t.name} offset ${t.offset} is not aligned to ${alignment}`);
    const bytes = ggmlTensorBytes(t.type, t.dims);
    if (bytes !== null && dataOffset + t.offset + bytes > fileSize)
      fail(`tensor ${t.name} (${typeName(t.type)}, ${bytes} bytes) runs past the end of the file`);
  }

  const tensorData = (name: string): Float32Array => {
    const t = byName.get(name);
    if (!t) return fail(`no tensor ${name}`);
    if (t.type !== GgmlType.F32) return fail(`tensor ${name} has ggml type ${t.type}, only F32 can be read`);
    const count = t.dims.reduce((a, b) => a * b, 1);
    const start = dataOffset + t.offset;
    return new Float32Array(buf.slice(start, start + 4 * count).buffer);
  };
  const tensorBytes = (name: string): Uint8Array => {
    const t = byName.get(name);
    if (!t) return fail(`no tensor ${name}`);
    const bytes = ggmlTensorBytes(t.type, t.dims);
    if (bytes === null)
      return fail(`tensor ${name} has ${typeName(t.type)} data, which this reader does not know`);
    const start = dataOffset + t.offset;
    return buf.subarray(start, start + bytes);
  };
  const tensorRange = (name: string, start: number, into: Uint8Array): void => {
    into.set(tensorBytes(name).subarray(start, start + into.length));
  };
  return { version, metadata, tensors, alignment, dataOffset, tensorData, tensorBytes, tensorRange };
}

/** Header bytes read first by openGgufFile (GPT-2's tokenizer metadata takes ~2 MB), then 4× as needed. */
const GGUF_PREFIX_BYTES = 4 << 20;

/**
 * A GGUF file's header (metadata and tensor table, checked as parseGguf checks them) read from its first
 * `prefixBytes` (more when the header is longer); tensor bytes are read from the file when asked, so a loader
 * never holds the whole file.
 */
export function openGgufFile(file: string, prefixBytes = GGUF_PREFIX_BYTES): GgufFile {
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  const readAt = (into: Uint8Array, position: number): void => {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (err) {
      throw new Error(`${file}: cannot be read (${(err as Error).message})`);
    }
    try {
      let done = 0;
      while (done < into.length) {
        const n = readSync(fd, into, done, into.length - done, position + done);
        if (n === 0) fail('truncated while it was being read');
        done += n;
      }
    } finally {
      closeSync(fd);
    }
  };
  let size: number;
  try {
    size = statSync(file).size;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(code === 'ENOENT' ? 'does not exist' : `cannot be read (${(err as Error).message})`);
  }
  let length = Math.min(size, Math.max(1, prefixBytes));
  for (;;) {
    const prefix = new Uint8Array(length);
    readAt(prefix, 0);
    let g: GgufFile;
    try {
      g = parseGguf(prefix, file, size);
    } catch (err) {
      if (err instanceof GgufShortPrefix && length < size) {
        length = Math.min(size, length * 4);
        continue;
      }
      throw err;
    }
    const byName = new Map(g.tensors.map((t) => [t.name, t]));
    const located = (name: string): { start: number; bytes: number } => {
      const t = byName.get(name);
      if (!t) return fail(`no tensor ${name}`);
      const bytes = ggmlTensorBytes(t.type, t.dims);
      if (bytes === null)
        return fail(`tensor ${name} has ${typeName(t.type)} data, which this reader does not know`);
      return { start: g.dataOffset + t.offset, bytes };
    };
    const tensorBytes = (name: string): Uint8Array => {
      const { start, bytes } = located(name);
      const out = new Uint8Array(bytes);
      readAt(out, start);
      return out;
    };
    return {
      ...g,
      tensorData(name) {
        const t = byName.get(name);
        if (t && t.type !== GgmlType.F32)
          return fail(`tensor ${name} has ggml type ${t.type}, only F32 can be read`);
        return new Float32Array(tensorBytes(name).buffer);
      },
      tensorBytes,
      tensorRange(name, start, into) {
        const at = located(name);
        if (start < 0 || start + into.length > at.bytes)
          throw new RangeError(`${name}: bytes [${start}, ${start + into.length}) of ${at.bytes}`);
        readAt(into, at.start + start);
      },
    };
  }
}

/** A GPT-2 GGUF loaded for our engine. */
export interface GgufModel {
  file: string;
  config: GPTConfig;
  tokenizerData: TokenizerData;
  /** 'q8_0' when any matrix is stored as Q8_0 (it stays so in memory), else 'f32' (F16/BF16 converted once). */
  format: 'f32' | 'q8_0';
  /** The layout's flat float32 buffer when format is 'f32', else null. */
  params: Float32Array | null;
  /** Every tensor as the engine takes it (see InferenceWeights): Q8_0 blocks as stored, the rest float32. */
  source: ModelSource;
}

/** The shortest decimal with the same float32 value (1e-5 for the float32 nearest 1e-5, as it was written). */
function shortestFloat32(x: number): number {
  for (let p = 1; p < 10; p++) {
    const v = Number(x.toPrecision(p));
    if (Math.fround(v) === x) return v;
  }
  return x;
}

/** A required integer hyper-parameter. */
function intKey(g: GgufFile, key: string, fail: (msg: string) => never): number {
  const v = g.metadata.get(key);
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0)
    fail(`${key} is ${v === undefined ? 'missing' : `not a positive integer (${String(v)})`}`);
  return n as number;
}

/** float32 values of a stored F32, F16 or BF16 tensor (a new array), or of Q8_0 blocks. */
function toFloats(bytes: Uint8Array, type: number, count: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  if (type === GgmlType.F32) for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
  else if (type === GgmlType.F16)
    for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
  else if (type === GgmlType.BF16) {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) u[i] = view.getUint16(2 * i, true) << 16;
  } else {
    // Q8_0: each block's f16 scale times its int8 values, rounded to float32 as ggml dequantises.
    for (let b = 0; b < count / Q8_BLOCK; b++) {
      const d = halfToFloat(view.getUint16(b * Q8_BLOCK_BYTES, true));
      for (let i = 0; i < Q8_BLOCK; i++) out[b * Q8_BLOCK + i] = d * view.getInt8(b * Q8_BLOCK_BYTES + 2 + i);
    }
  }
  return out;
}

/**
 * Loads a GGUF file of GPT-2 architecture (as llama.cpp's converter or our export writes it): the hyper-parameters,
 * the tokenizer, and every tensor, checked against the header (architecture, each tensor present with the shape
 * the hyper-parameters give, a type we read, its bytes inside the file) before anything is sized from it.
 * Q8_0 matrices stay Q8_0 (never expanded to float32); F16/BF16 tensors are converted to float32 once.
 * Errors name the file and the reason.
 */
export async function loadGgufModel(file: string): Promise<GgufModel> {
  return ggufModel(openGgufFile(file), file);
}

/** loadGgufModel over bytes already read, or a file opened with openGgufFile. */
export function ggufModel(bytes: Uint8Array | GgufFile, file: string): GgufModel {
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  const g = bytes instanceof Uint8Array ? parseGguf(bytes, file) : bytes;
  const arch = g.metadata.get('general.architecture');
  if (arch !== 'gpt2') fail(`architecture is ${JSON.stringify(arch ?? null)}, not gpt2`);
  const nEmbd = intKey(g, 'gpt2.embedding_length', fail);
  const nLayer = intKey(g, 'gpt2.block_count', fail);
  const nHead = intKey(g, 'gpt2.attention.head_count', fail);
  const nPositions = intKey(g, 'gpt2.context_length', fail);
  const ff = g.metadata.get('gpt2.feed_forward_length');
  if (ff !== undefined && Number(ff) !== 4 * nEmbd)
    fail(`gpt2.feed_forward_length is ${ff}, GPT-2 needs 4 × ${nEmbd}`);
  const epsValue = g.metadata.get('gpt2.attention.layer_norm_epsilon');
  const eps = typeof epsValue === 'number' ? shortestFloat32(epsValue) : 1e-5;
  const embd = g.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embd) return fail('no tensor token_embd.weight');
  if (embd.dims.length !== 2 || embd.dims[0] !== nEmbd)
    fail(`token_embd.weight has dims [${embd.dims}], expected [${nEmbd}, vocabulary]`);
  const vocabSize = embd.dims[1];

  const tokens = g.metadata.get('tokenizer.ggml.tokens');
  const mergesValue = g.metadata.get('tokenizer.ggml.merges');
  if (g.metadata.get('tokenizer.ggml.model') !== 'gpt2')
    fail('tokenizer.ggml.model is not gpt2 (byte-level BPE)');
  if (!Array.isArray(tokens) || tokens.some((t) => typeof t !== 'string'))
    return fail('tokenizer.ggml.tokens is missing or not a list of strings');
  if (tokens.length !== vocabSize)
    fail(`the tokenizer has ${tokens.length} tokens but token_embd.weight holds ${vocabSize} rows`);
  if (!Array.isArray(mergesValue) || mergesValue.some((m) => typeof m !== 'string'))
    return fail('tokenizer.ggml.merges is missing or not a list of strings');
  const vocab: Record<string, number> = {};
  (tokens as string[]).forEach((t, id) => {
    if (Object.hasOwn(vocab, t)) fail(`token ${JSON.stringify(t)} appears twice in tokenizer.ggml.tokens`);
    vocab[t] = id;
  });
  const merges = (mergesValue as string[]).map((m, i): [string, string] => {
    const at = m.indexOf(' ');
    if (at <= 0 || at === m.length - 1 || m.indexOf(' ', at + 1) >= 0)
      fail(`merge ${i} ${JSON.stringify(m)} is not two tokens separated by one space`);
    return [m.slice(0, at), m.slice(at + 1)];
  });
  const types = g.metadata.get('tokenizer.ggml.token_type');
  const specialTokens = Array.isArray(types)
    ? (tokens as string[]).filter((_, i) => Number(types[i]) === 3)
    : undefined;
  const tokenId = (key: string): number => {
    const v = g.metadata.get(key);
    if (v === undefined) {
      const eos = vocab[EOS_TOKEN];
      return eos === undefined ? fail(`${key} is missing and there is no ${EOS_TOKEN} token`) : eos;
    }
    const id = Number(v);
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) fail(`${key} ${String(v)} is not a token id`);
    return id;
  };

  const byName = new Map(g.tensors.map((t) => [t.name, t]));
  let config: GPTConfig;
  try {
    config = validateConfig({
      vocabSize,
      nPositions,
      nEmbd,
      nLayer,
      nHead,
      layerNormEpsilon: eps,
      tieWordEmbeddings: !byName.has('output.weight'),
      bosTokenId: tokenId('tokenizer.ggml.bos_token_id'),
      eosTokenId: tokenId('tokenizer.ggml.eos_token_id'),
    });
  } catch (e) {
    return fail(e instanceof Error ? e.message : String(e));
  }
  const layout = parameterLayout(config);
  // Every tensor of the layout, with the dims and a type we read: checked before anything is allocated.
  let anyQ8 = false;
  for (const spec of layout.tensors) {
    const t = byName.get(spec.ggufName);
    if (!t) fail(`no tensor ${spec.ggufName}`);
    const info = t as GgufTensorInfo;
    const rowMajor = spec.conv1d ? [spec.shape[1], spec.shape[0]] : spec.shape;
    const want = [...rowMajor].reverse();
    if (info.dims.length !== want.length || info.dims.some((d, i) => d !== want[i]))
      fail(`tensor ${spec.ggufName} has dims [${info.dims}], expected [${want}]`);
    const known = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0] as number[];
    if (!known.includes(info.type))
      fail(`tensor ${spec.ggufName} is ${typeName(info.type)}; this engine reads F32, F16, BF16 and Q8_0`);
    if (info.type === GgmlType.Q8_0) {
      if (ggmlTensorBytes(info.type, info.dims) === null)
        fail(`tensor ${spec.ggufName} is Q8_0 but its rows of ${info.dims[0]} do not split into 32-blocks`);
      if (want.length === 2 && spec.hfName !== 'transformer.wpe.weight') anyQ8 = true;
    }
  }
  const stored = (spec: TensorSpec) => byName.get(spec.ggufName) as GgufTensorInfo;
  /** float32 in the layout's orientation (Conv1D weights back to [in, out]). */
  const floats = (spec: TensorSpec): Float32Array => {
    const f = toFloats(g.tensorBytes(spec.ggufName), stored(spec).type, spec.size);
    return spec.conv1d ? transpose(f, spec.shape[1], spec.shape[0]) : f;
  };
  const matrices = new Set(['transformer.wte.weight', 'lm_head.weight']);
  const source: ModelSource = {
    tensor(hfName: string): TensorData {
      const spec = layout.byName.get(hfName);
      if (!spec) return fail(`no tensor for ${hfName}`);
      const t = stored(spec);
      if (t.type === GgmlType.Q8_0 && (spec.conv1d || matrices.has(hfName))) {
        const name = spec.ggufName;
        const rowBytes = (t.dims[0] / Q8_BLOCK) * Q8_BLOCK_BYTES;
        return {
          format: 'q8_0',
          get blocks() {
            return g.tensorBytes(name);
          },
          readRows: (first, _rows, into) => g.tensorRange(name, first * rowBytes, into),
        };
      }
      return { format: 'f32', data: floats(spec) };
    },
  };
  let params: Float32Array | null = null;
  if (!anyQ8) {
    params = new Float32Array(layout.total);
    for (const spec of layout.tensors) params.set(floats(spec), spec.offset);
  }
  return {
    file,
    config,
    tokenizerData: { vocab, merges, specialTokens },
    format: anyQ8 ? 'q8_0' : 'f32',
    params,
    source,
  };
}
