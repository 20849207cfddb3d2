// Protocol Buffers wire format: a writer that builds messages as chunk lists (payloads are never copied until
// the final join) and a reader that splits a message into its fields, for the ONNX files we write and check.

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

const utf8 = new TextEncoder();

/** One message under construction: its encoded fields in order. */
export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  get length(): number {
    return this.size;
  }

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.size += bytes.length;
  }

  private key(field: number, wire: number): void {
    this.push(varintBytes(BigInt(field * 8 + wire)));
  }

  /** int64/int32/enum/bool field (negative numbers as ten-byte two's complement, as protobuf does). */
  int(field: number, value: number | bigint): this {
    this.key(field, WIRE_VARINT);
    this.push(varintBytes(BigInt.asUintN(64, BigInt(value))));
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, WIRE_I32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }

  /** Length-delimited field holding `value` as is (kept by reference until toBytes). */
  bytes(field: number, value: Uint8Array): this {
    this.key(field, WIRE_LEN);
    this.push(varintBytes(BigInt(value.length)));
    this.push(value);
    return this;
  }

  /** Embedded message field. */
  message(field: number, value: ProtoWriter): this {
    this.key(field, WIRE_LEN);
    this.push(varintBytes(BigInt(value.size)));
    for (const p of value.parts) this.push(p);
    return this;
  }

  /** Packed repeated int64 field. */
  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const body = new ProtoWriter();
    for (const v of values) body.push(varintBytes(BigInt.asUintN(64, BigInt(v))));
    this.key(field, WIRE_LEN);
    this.push(varintBytes(BigInt(body.size)));
    for (const p of body.parts) this.push(p);
    return this;
  }

  /** The encoded message as one buffer. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

function varintBytes(value: bigint): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

/** One decoded field: varints as bigint, fixed32/fixed64 as raw bytes, length-delimited as a view. */
export interface ProtoField {
  field: number;
  wire: number;
  varint?: bigint;
  bytes?: Uint8Array;
}

export class ProtoError extends Error {
  override name = 'ProtoError';
}

/** Splits one message into its fields (no schema); throws ProtoError on truncated or malformed input. */
export function readFields(buf: Uint8Array, what = 'message'): ProtoField[] {
  const fields: ProtoField[] = [];
  let i = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new ProtoError(`${what}: truncated varint at byte ${i}`);
      const b = buf[i++];
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return result;
      shift += 7n;
      if (shift > 63n) throw new ProtoError(`${what}: varint longer than 10 bytes at byte ${i}`);
    }
  };
  const take = (n: number): Uint8Array => {
    if (i + n > buf.length) throw new ProtoError(`${what}: field runs past the end (byte ${i} + ${n})`);
    const v = buf.subarray(i, i + n);
    i += n;
    return v;
  };
  while (i < buf.length) {
    const key = readVarint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) throw new ProtoError(`${what}: field number 0 at byte ${i}`);
    if (wire === WIRE_VARINT) fields.push({ field, wire, varint: readVarint() });
    else if (wire === WIRE_I64) fields.push({ field, wire, bytes: take(8) });
    else if (wire === WIRE_LEN) fields.push({ field, wire, bytes: take(Number(readVarint())) });
    else if (wire === WIRE_I32) fields.push({ field, wire, bytes: take(4) });
    else throw new ProtoError(`${what}: unsupported wire type ${wire} for field ${field}`);
  }
  return fields;
}

/** Signed value of an int64 varint. */
export function int64(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

/** Decodes a packed (or single) repeated int64 field's occurrences. */
export function readInts(fields: ProtoField[], field: number): number[] {
  const out: number[] = [];
  for (const f of fields) {
    if (f.field !== field) continue;
    if (f.varint !== undefined) out.push(int64(f.varint));
    else if (f.bytes) for (const p of readPacked(f.bytes)) out.push(int64(p));
  }
  return out;
}

function readPacked(buf: Uint8Array): bigint[] {
  const out: bigint[] = [];
  let v = 0n;
  let shift = 0n;
  for (const b of buf) {
    v |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) {
      out.push(v);
      v = 0n;
      shift = 0n;
    } else shift += 7n;
  }
  if (shift !== 0n) throw new ProtoError('truncated packed varint list');
  return out;
}
