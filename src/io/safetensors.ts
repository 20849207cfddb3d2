// safetensors reader and writer: strict header validation on read, Rust-identical byte layout on write.
import { halfToFloat } from '../engine/formats/half.js';

/** Element types we read; F16/BF16 are widened to float32 on load. */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export type TensorData =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

export interface SafeTensor {
  /** dtype as stored in the file (F16/BF16 data is already converted to Float32Array). */
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

export interface ParsedSafetensors {
  tensors: Map<string, SafeTensor>;
  /** The `__metadata__` string map, or null when absent. */
  metadata: Record<string, string> | null;
}

/** A tensor to write: float32 or int64 data in row-major order. */
export interface TensorToWrite {
  dtype?: 'F32' | 'I64';
  shape: number[];
  data: Float32Array | BigInt64Array;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

// The Rust writer orders tensors by dtype (its enum order, largest first) and then by name.
const WRITE_DTYPE_RANK: Record<string, number> = { I64: 0, F64: 1, F32: 2 };

/** Typed arrays use the host's byte order; safetensors is little-endian, as are the hosts we run on. */
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** The safetensors format caps the JSON header at 100 MB (as the reference implementation does). */
const MAX_HEADER_BYTES = 100_000_000;

export interface ParseOptions {
  /**
   * Float32 tensors whose bytes are 4-byte aligned in `buf` come back as views into it instead of copies
   * (for a caller that copies them out anyway: a 13 MB model then skips one allocation and copy).
   */
  views?: boolean;
}

/** Parses a whole safetensors file; throws SafetensorsError naming `file` and the offending tensor. */
export function parseSafetensors(
  buf: Uint8Array,
  file: string,
  options: ParseOptions = {},
): Map<string, SafeTensor> {
  return parseSafetensorsWithMetadata(buf, file, options).tensors;
}

/** One tensor of a validated header and where its bytes lie in the file. */
export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte offset of the tensor's first byte from the start of the file. */
  start: number;
  /** Byte length of the tensor's data. */
  bytes: number;
}

/** A header checked against the file's size: the tensors tile the data section exactly. */
export interface SafetensorsHeader {
  entries: SafetensorsEntry[];
  metadata: Record<string, string> | null;
}

/**
 * The header's byte length from the file's first 8 bytes (`first` may hold more), checked against the size
 * of the whole file; the header occupies bytes [8, 8 + length).
 */
export function safetensorsHeaderLength(first: Uint8Array, fileSize: number, file: string): number {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${file}: ${msg}`);
  };
  if (!HOST_IS_LITTLE_ENDIAN) fail('reading safetensors needs a little-endian host');
  if (fileSize < 8 || first.byteLength < 8)
    fail(`truncated: ${fileSize} bytes, a safetensors file starts with an 8-byte header length`);
  const headerLen = new DataView(first.buffer, first.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(fileSize - 8)) {
    fail(
      `header length ${headerLen} runs past the end of the file (${fileSize} bytes): truncated or not safetensors`,
    );
  }
  const n = Number(headerLen);
  if (n > MAX_HEADER_BYTES) fail(`header length ${n} exceeds the 100 MB limit`);
  return n;
}

/**
 * Parses and validates the JSON header (`header`: the file's bytes [8, 8 + length)) of a file of `fileSize`
 * bytes, without its data: every entry's dtype, shape and offsets are checked and the tensors must tile
 * the data section with no overlap, gap or trailing bytes. Throws SafetensorsError naming `file`.
 */
export function parseSafetensorsHeader(
  header: Uint8Array,
  fileSize: number,
  file: string,
): SafetensorsHeader {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${file}: ${msg}`);
  };
  let headerText: string;
  try {
    headerText = new TextDecoder('utf-8', { fatal: true }).decode(header);
  } catch {
    return fail('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(headerText);
  } catch (err) {
    return fail(`header is not valid JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('header is not a JSON object');

  const dataStart = 8 + header.byteLength;
  const dataLen = fileSize - dataStart;
  let metadata: Record<string, string> | null = null;
  const entries: Array<{
    name: string;
    dtype: SafetensorsDtype;
    shape: number[];
    begin: number;
    end: number;
  }> = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(raw, fail);
      continue;
    }
    const where = `tensor ${name}`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      fail(`${where}: entry is not an object`);
    const entry = raw as Record<string, unknown>;
    for (const key of ['dtype', 'shape', 'data_offsets']) {
      if (!(key in entry)) fail(`${where}: missing "${key}"`);
    }
    const dtype = entry.dtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      fail(
        `${where}: unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`,
      );
    }
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const offsets = entry.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      fail(
        `${where}: data_offsets ${JSON.stringify(offsets)} must be two integers [begin, end] with begin ≤ end`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLen) {
      fail(
        `${where}: data_offsets [${begin}, ${end}] run past the data section (${dataLen} bytes): file truncated or header lies`,
      );
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const bytes = elements * DTYPE_BYTES[dtype as SafetensorsDtype];
    if (bytes !== end - begin) {
      fail(
        `${where}: shape ${JSON.stringify(shape)} × ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    }
    entries.push({ name, dtype: dtype as SafetensorsDtype, shape: shape as number[], begin, end });
  }

  // The tensors must tile the data section exactly: no overlap, no gap, no trailing bytes.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: string | null = null;
  for (const e of sorted) {
    if (e.begin < cursor)
      fail(`tensor ${e.name}: data_offsets [${e.begin}, ${e.end}] overlap tensor ${previous}`);
    if (e.begin > cursor) {
      fail(
        `tensor ${e.name}: gap of ${e.begin - cursor} bytes before its data (offset ${cursor}..${e.begin} unused)`,
      );
    }
    cursor = e.end;
    previous = e.name;
  }
  if (cursor !== dataLen) {
    fail(
      `${dataLen - cursor} trailing bytes after the last tensor (data section ${dataLen} bytes, tensors cover ${cursor})`,
    );
  }
  return {
    entries: entries.map((e) => ({
      name: e.name,
      dtype: e.dtype,
      shape: e.shape,
      start: dataStart + e.begin,
      bytes: e.end - e.begin,
    })),
    metadata,
  };
}

/** Like parseSafetensors, and also returns the `__metadata__` map. */
export function parseSafetensorsWithMetadata(
  buf: Uint8Array,
  file: string,
  options: ParseOptions = {},
): ParsedSafetensors {
  const n = safetensorsHeaderLength(buf, buf.byteLength, file);
  const { entries, metadata } = parseSafetensorsHeader(buf.subarray(8, 8 + n), buf.byteLength, file);
  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) {
    const bytes = buf.subarray(e.start, e.start + e.bytes);
    const view = options.views && e.dtype === 'F32' && bytes.byteOffset % 4 === 0;
    const data = view
      ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
      : decodeTensor(e.dtype, bytes);
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

function parseMetadata(raw: unknown, fail: (msg: string) => never): Record<string, string> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('__metadata__ is not an object');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v !== 'string') fail(`__metadata__.${k} is not a string`);
    out[k] = v as string;
  }
  return out;
}

/** Copies the little-endian bytes into a fresh, aligned typed array (widening half precision to float32). */
export function decodeTensor(dtype: SafetensorsDtype, bytes: Uint8Array): TensorData {
  const copy = () => {
    const out = new Uint8Array(bytes.byteLength);
    out.set(bytes);
    return out.buffer;
  };
  switch (dtype) {
    case 'F32':
      return new Float32Array(copy());
    case 'F64':
      return new Float64Array(copy());
    case 'I64':
      return new BigInt64Array(copy());
    case 'I32':
      return new Int32Array(copy());
    case 'I16':
      return new Int16Array(copy());
    case 'I8':
      return new Int8Array(copy());
    case 'U8':
    case 'BOOL':
      return new Uint8Array(copy());
    case 'F16': {
      const halves = new Uint16Array(copy());
      const out = new Float32Array(halves.length);
      for (let i = 0; i < halves.length; i++) out[i] = halfToFloat(halves[i]);
      return out;
    }
    case 'BF16': {
      const halves = new Uint16Array(copy());
      const words = new Uint32Array(halves.length);
      for (let i = 0; i < halves.length; i++) words[i] = halves[i] << 16;
      return new Float32Array(words.buffer);
    }
  }
}

/**
 * Serializes tensors the way the Rust `safetensors` crate does: tensors ordered by dtype then name,
 * compact JSON header with `__metadata__` first, padded with spaces to a multiple of 8 bytes.
 */
export function serializeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array {
  if (!HOST_IS_LITTLE_ENDIAN) throw new SafetensorsError('writing safetensors needs a little-endian host');
  const list = (tensors instanceof Map ? [...tensors] : Object.entries(tensors)).map(([name, t]) => {
    const dtype = t.dtype ?? (t.data instanceof BigInt64Array ? 'I64' : 'F32');
    const expected = dtype === 'I64' ? BigInt64Array : Float32Array;
    if (!(t.data instanceof expected))
      throw new SafetensorsError(`tensor ${name}: data does not match dtype ${dtype}`);
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (elements !== t.data.length) {
      throw new SafetensorsError(
        `tensor ${name}: shape ${JSON.stringify(t.shape)} has ${elements} elements, data has ${t.data.length}`,
      );
    }
    return { name, dtype, shape: t.shape, data: t.data };
  });
  list.sort(
    (a, b) => WRITE_DTYPE_RANK[a.dtype] - WRITE_DTYPE_RANK[b.dtype] || compareCodeUnits(a.name, b.name),
  );

  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of list) {
    if (t.name === '__metadata__') throw new SafetensorsError('a tensor cannot be named __metadata__');
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + padded);
  let pos = 8 + padded;
  for (const t of list) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** Byte-wise (UTF-16 code unit) order, like Rust's string ordering for ASCII names. */
function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
