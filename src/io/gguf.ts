// GGUF v3 export of our GPT-2 (all F32) for llama.cpp / Ollama / node-llama-cpp, and a reader for checks.
import { readFile } from 'node:fs/promises';
import type { GPTConfig } from '../engine/config.js';
import { validateConfig } from '../engine/config.js';
import { parameterLayout } from '../engine/layout.js';
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

/** ggml tensor types we write or recognise. */
export const GgmlType = { F32: 0, F16: 1 } as const;

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
}

export interface GgufExportOptions {
  config: GPTConfig;
  params: Float32Array;
  tokenizerData: TokenizerData;
  /** general.name (default "tiny-llm"). */
  name?: string;
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
    ['general.file_type', u32(0)], // 0 = all F32
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
  const tensors: Array<{ name: string; dims: number[]; data: Float32Array; offset: number }> = [];
  let dataSize = 0;
  for (const t of layout.tensors) {
    const src = options.params.subarray(t.offset, t.offset + t.size);
    const rowMajorShape = t.conv1d ? [t.shape[1], t.shape[0]] : t.shape;
    const data = t.conv1d ? transpose(src, t.shape[0], t.shape[1]) : src;
    tensors.push({ name: t.ggufName, dims: [...rowMajorShape].reverse(), data, offset: dataSize });
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
    w.u32(GgmlType.F32);
    w.u64(t.offset);
  }
  const header = w.finish();
  const dataOffset = alignUp(header.byteLength, GGUF_ALIGNMENT);
  const out = new Uint8Array(dataOffset + dataSize);
  out.set(header, 0);
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), dataOffset + t.offset);
  }
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

/** Parses GGUF v2/v3 bytes; errors name `file` and what is wrong. */
export function parseGguf(buf: Uint8Array, file: string): GgufFile {
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  const need = (n: number, what: string) => {
    if (pos + n > buf.byteLength) fail(`truncated while reading ${what} at byte ${pos}`);
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

  if (buf.byteLength < 24) fail(`truncated: ${buf.byteLength} bytes is less than a GGUF header`);
  if (u32('magic') !== GGUF_MAGIC) fail('not a GGUF file (bad magic)');
  const version = u32('version');
  if (version !== 2 && version !== 3) fail(`unsupported GGUF version ${version}`);
  const tensorCount = u64('tensor count');
  const kvCount = u64('metadata count');
  // Every entry takes at least 8 bytes, so counts beyond the file size are lies, not allocations to attempt.
  if (tensorCount > buf.byteLength / 8 || kvCount > buf.byteLength / 8)
    fail('tensor or metadata count exceeds the file size');

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = string(`metadata key ${i}`);
    const type = u32(`type of ${key}`);
    if (type === GgufType.ARRAY) {
      const itemType = u32(`item type of ${key}`);
      const n = u64(`length of ${key}`);
      if (n > buf.byteLength - pos) fail(`${key}: array length ${n} exceeds the file size`);
      const items: GgufScalar[] = new Array(n);
      for (let j = 0; j < n; j++) items[j] = scalar(itemType, `${key}[${j}]`);
      metadata.set(key, items);
    } else {
      metadata.set(key, scalar(type, key));
    }
  }

  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = string(`tensor ${i} name`);
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
  for (const t of tensors) {
    if (t.offset % alignment !== 0)
      fail(`tensor ${t.name} offset ${t.offset} is not aligned to ${alignment}`);
    if (t.type === GgmlType.F32) {
      const end = dataOffset + t.offset + 4 * t.dims.reduce((a, b) => a * b, 1);
      if (end > buf.byteLength) fail(`tensor ${t.name} data runs past the end of the file`);
    }
  }

  const tensorData = (name: string): Float32Array => {
    const t = byName.get(name);
    if (!t) return fail(`no tensor ${name}`);
    if (t.type !== GgmlType.F32) return fail(`tensor ${name} has ggml type ${t.type}, only F32 can be read`);
    const count = t.dims.reduce((a, b) => a * b, 1);
    const start = dataOffset + t.offset;
    return new Float32Array(buf.slice(start, start + 4 * count).buffer);
  };
  return { version, metadata, tensors, alignment, dataOffset, tensorData };
}
