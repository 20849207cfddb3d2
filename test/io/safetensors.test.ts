// safetensors: byte-exact round trips with files Python wrote, half-precision widening, and every malformed header rejected by name.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { halfToFloat } from '../../src/engine/formats/half.js';
import {
  parseSafetensors,
  parseSafetensorsWithMetadata,
  serializeSafetensors,
  type TensorToWrite,
} from '../../src/io/safetensors.js';
import { fixture } from '../helpers/fixtures.js';

const FILE = 'test.safetensors';

/** Assembles a safetensors file from a header object and raw data, optionally lying about the header length. */
function rawFile(header: unknown, data: Uint8Array, headerLen?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLen ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

function expectError(buf: Uint8Array, pattern: RegExp): void {
  assert.throws(
    () => parseSafetensors(buf, FILE),
    (err: Error) => {
      assert.ok(err.message.startsWith(`${FILE}: `), `error names the file: ${err.message}`);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

describe('safetensors round trip', () => {
  for (const name of [
    'model.safetensors',
    'reference-logits.safetensors',
    'reference-grads-step0.safetensors',
  ]) {
    it(`parse → serialize reproduces multi-v512/${name} byte for byte`, () => {
      const bytes = new Uint8Array(readFileSync(fixture('multi-v512', name)));
      const { tensors, metadata } = parseSafetensorsWithMetadata(bytes, name);
      const out = serializeSafetensors(tensors as Map<string, TensorToWrite>, metadata ?? undefined);
      assert.equal(out.length, bytes.length);
      assert.ok(Buffer.from(out).equals(Buffer.from(bytes)), 'identical bytes');
    });
  }

  it('views: aligned float32 tensors are views into the file bytes, unaligned ones copies, values equal', () => {
    const bytes = new Uint8Array(readFileSync(fixture('multi-v512', 'model.safetensors')));
    const copied = parseSafetensors(bytes, FILE);
    const viewed = parseSafetensors(bytes, FILE, { views: true });
    // The same file one byte further into a buffer: no float32 tensor is aligned there.
    const shifted = new Uint8Array(bytes.length + 1).subarray(1);
    shifted.set(bytes);
    const unaligned = parseSafetensors(shifted, FILE, { views: true });
    let views = 0;
    for (const [name, tensor] of copied) {
      const view = viewed.get(name)!;
      assert.deepEqual(Array.from(view.data as Float32Array), Array.from(tensor.data as Float32Array), name);
      assert.notEqual(tensor.data.buffer, bytes.buffer, `${name}: a copy by default`);
      if (view.data.buffer === bytes.buffer) views++;
      assert.notEqual(unaligned.get(name)!.data.buffer, shifted.buffer, `${name}: unaligned must be copied`);
      assert.deepEqual(
        Array.from(unaligned.get(name)!.data as Float32Array),
        Array.from(tensor.data as Float32Array),
      );
    }
    assert.equal(views, copied.size, 'every tensor of an aligned float32 file is a view');
  });

  it('reads int64 tensors as BigInt64Array and float32 with exact values', () => {
    const tensors = new Map<string, TensorToWrite>([
      ['ids', { shape: [3], data: BigInt64Array.from([1n, -2n, 50256n]) }],
      ['w', { shape: [2, 2], data: Float32Array.from([0.5, -1.25, 3e-8, 1e30]) }],
    ]);
    const parsed = parseSafetensors(serializeSafetensors(tensors), FILE);
    assert.deepEqual(Array.from(parsed.get('ids')!.data as BigInt64Array), [1n, -2n, 50256n]);
    assert.equal(parsed.get('ids')!.dtype, 'I64');
    assert.deepEqual(
      Array.from(parsed.get('w')!.data as Float32Array),
      Array.from(tensors.get('w')!.data as Float32Array),
    );
    assert.deepEqual(parsed.get('w')!.shape, [2, 2]);
  });

  it('header is space-padded to 8 bytes and int64 tensors come before float32 (Rust order)', () => {
    const buf = serializeSafetensors({
      b: { shape: [1], data: Float32Array.of(1) },
      a: { shape: [1], data: BigInt64Array.of(1n) },
    });
    const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
    assert.equal(n % 8, 0);
    const header = new TextDecoder().decode(buf.subarray(8, 8 + n));
    assert.match(header, /^\{"a":.*"b":.*\} *$/);
  });

  it('widens F16 and BF16 to float32 exactly', () => {
    // F16: 1.0 = 0x3c00, -2.5 = 0xc100, smallest subnormal 0x0001, 65504 = 0x7bff. BF16: 1.0 = 0x3f80, -3.0 = 0xc040.
    const f16 = new Uint8Array(Uint16Array.from([0x3c00, 0xc100, 0x0001, 0x7bff]).buffer);
    const bf16 = new Uint8Array(Uint16Array.from([0x3f80, 0xc040]).buffer);
    const data = new Uint8Array([...f16, ...bf16]);
    const header = {
      h: { dtype: 'F16', shape: [4], data_offsets: [0, 8] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [8, 12] },
    };
    const parsed = parseSafetensors(rawFile(header, data), FILE);
    assert.deepEqual(Array.from(parsed.get('h')!.data as Float32Array), [1, -2.5, 2 ** -24, 65504]);
    assert.deepEqual(Array.from(parsed.get('b')!.data as Float32Array), [1, -3]);
    assert.equal(halfToFloat(0x7c00), Number.POSITIVE_INFINITY);
  });
});

describe('safetensors rejects malformed files, naming the file and tensor', () => {
  const good = { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const data = f32Bytes([1, 2]);

  it('accepts the well-formed base case and __metadata__', () => {
    const parsed = parseSafetensorsWithMetadata(
      rawFile({ __metadata__: { format: 'pt' }, ...good }, data),
      FILE,
    );
    assert.deepEqual(parsed.metadata, { format: 'pt' });
    assert.equal(parsed.tensors.size, 1);
  });
  it('file shorter than 8 bytes', () => expectError(new Uint8Array(5), /truncated: 5 bytes/));
  it('header length beyond the file', () =>
    expectError(rawFile(good, data, 10_000n), /header length 10000 runs past the end/));
  it('truncated data section', () => {
    const full = rawFile(good, data);
    expectError(
      full.subarray(0, full.length - 3),
      /tensor w: data_offsets \[0, 8\] run past the data section \(5 bytes\)/,
    );
  });
  it('header that is not JSON', () => expectError(rawFile('{"w": {', data), /header is not valid JSON/));
  it('header that is a JSON array', () =>
    expectError(rawFile('[1,2]', new Uint8Array(0)), /not a JSON object/));
  it('offsets beyond the data', () =>
    expectError(
      rawFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, data),
      /tensor w: data_offsets \[0, 16\] run past/,
    ));
  it('overlapping offsets', () => {
    const header = {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    };
    expectError(rawFile(header, f32Bytes([1, 2, 3])), /tensor b: data_offsets \[4, 12\] overlap tensor a/);
  });
  it('a gap between tensors', () => {
    const header = {
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
    };
    expectError(rawFile(header, f32Bytes([1, 2, 3])), /tensor b: gap of 4 bytes/);
  });
  it('trailing garbage after the last tensor', () =>
    expectError(rawFile(good, new Uint8Array([...data, 1, 2, 3])), /3 trailing bytes after the last tensor/));
  it('unknown dtype', () =>
    expectError(
      rawFile({ w: { dtype: 'F8_E9', shape: [2], data_offsets: [0, 8] } }, data),
      /tensor w: unsupported dtype "F8_E9"/,
    ));
  it('shape that does not match the byte count', () =>
    expectError(
      rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data),
      /tensor w: shape \[3\] × F32 needs 12 bytes but data_offsets \[0, 8\] hold 8/,
    ));
  it('entry missing data_offsets', () =>
    expectError(rawFile({ w: { dtype: 'F32', shape: [2] } }, data), /tensor w: missing "data_offsets"/));
  it('negative or fractional shape', () =>
    expectError(
      rawFile({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, data),
      /tensor w: shape \[-2\]/,
    ));
  it('reversed offsets', () =>
    expectError(rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, data), /begin ≤ end/));
  it('non-string metadata', () =>
    expectError(rawFile({ __metadata__: { n: 1 }, ...good }, data), /__metadata__\.n is not a string/));
});
