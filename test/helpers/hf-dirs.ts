// Writes Hugging Face model directories the way other tools store them (F16/BF16, sharded, Hub-style names,
// attention buffers, a stored tied head) from a float32 one, for the loader and model-source tests.

import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { f16Bits, halfToFloat } from '../../src/engine/formats/half.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { openModelDir } from '../../src/io/checkpoint.js';
import { parseSafetensors } from '../../src/io/safetensors.js';

export type StoredDtype = 'F32' | 'F16' | 'BF16';

export interface VariantOptions {
  dtype?: StoredDtype;
  /** Split the tensors over this many shards with a model.safetensors.index.json (default: one file). */
  shards?: number;
  /** Store the body without the `transformer.` prefix, as the Hub's `gpt2` and `distilgpt2` do. */
  stripPrefix?: boolean;
  /** Add the `attn.bias` / `attn.masked_bias` buffers older checkpoints carry. */
  buffers?: boolean;
  /** Store `lm_head.weight` (a copy of the token embedding) although the head is tied. */
  storeTiedHead?: boolean;
  /** Files copied beside the weights (config.json and generation_config.json by default). */
  copy?: string[];
}

/** float32 → bfloat16 bits, rounding to nearest even (what torch's `.bfloat16()` does). */
export function floatToBf16Bits(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** A safetensors file from raw tensors, in the given order (metadata first, header padded to 8 bytes). */
export function rawSafetensors(tensors: Array<[string, RawTensor]>, metadata = { format: 'pt' }): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    offset += t.bytes.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + padded);
  let pos = 8 + padded;
  for (const [, t] of tensors) {
    out.set(t.bytes, pos);
    pos += t.bytes.byteLength;
  }
  return out;
}

/** A float32 tensor's data stored as `dtype`. */
export function encodeAs(data: Float32Array, dtype: StoredDtype): Uint8Array {
  if (dtype === 'F32')
    return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const bits = new Uint16Array(data.length);
  const convert = dtype === 'F16' ? f16Bits : floatToBf16Bits;
  for (let i = 0; i < data.length; i++) bits[i] = convert(data[i]);
  return new Uint8Array(bits.buffer);
}

/** The value a float32 takes once stored as `dtype` and widened back. */
export function roundTo(dtype: StoredDtype, data: Float32Array): Float32Array {
  if (dtype === 'F32') return data.slice();
  const out = new Float32Array(data.length);
  if (dtype === 'BF16') {
    const words = new Uint32Array(out.buffer);
    for (let i = 0; i < data.length; i++) words[i] = floatToBf16Bits(data[i]) << 16;
    return out;
  }
  for (let i = 0; i < data.length; i++) out[i] = halfToFloat(f16Bits(data[i]));
  return out;
}

/** Writes a variant of the float32 model directory `src` into `out` (created). */
export function writeVariant(src: string, out: string, o: VariantOptions = {}): void {
  mkdirSync(out, { recursive: true });
  for (const f of o.copy ?? ['config.json', 'generation_config.json']) cpSync(join(src, f), join(out, f));
  const file = join(src, 'model.safetensors');
  const parsed = parseSafetensors(new Uint8Array(readFileSync(file)), file);
  const dtype = o.dtype ?? 'F32';
  const tensors: Array<[string, RawTensor]> = [];
  let layers = 0;
  for (const [name, t] of parsed) {
    const stored = o.stripPrefix ? name.replace(/^transformer\./, '') : name;
    tensors.push([stored, { dtype, shape: t.shape, bytes: encodeAs(t.data as Float32Array, dtype) }]);
    const layer = /^transformer\.h\.(\d+)\./.exec(name);
    if (layer) layers = Math.max(layers, Number(layer[1]) + 1);
  }
  if (o.storeTiedHead) {
    const wte = parsed.get('transformer.wte.weight')!;
    tensors.push([
      'lm_head.weight',
      { dtype, shape: wte.shape, bytes: encodeAs(wte.data as Float32Array, dtype) },
    ]);
  }
  if (o.buffers) {
    const nPositions = parsed.get('transformer.wpe.weight')!.shape[0];
    for (let l = 0; l < layers; l++) {
      const prefix = o.stripPrefix ? `h.${l}` : `transformer.h.${l}`;
      const mask = new Uint8Array(nPositions * nPositions);
      for (let i = 0; i < nPositions; i++) mask.fill(1, i * nPositions, i * nPositions + i + 1);
      tensors.push([
        `${prefix}.attn.bias`,
        { dtype: 'BOOL', shape: [1, 1, nPositions, nPositions], bytes: mask },
      ]);
      tensors.push([
        `${prefix}.attn.masked_bias`,
        { dtype: 'F32', shape: [], bytes: encodeAs(Float32Array.of(-1e4), 'F32') },
      ]);
    }
  }
  const shards = o.shards ?? 1;
  if (shards === 1) {
    writeFileSync(join(out, 'model.safetensors'), rawSafetensors(tensors));
    return;
  }
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  const per = Math.ceil(tensors.length / shards);
  for (let s = 0; s < shards; s++) {
    const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    for (const [tensor, t] of part) {
      weightMap[tensor] = name;
      totalSize += t.bytes.byteLength;
    }
    writeFileSync(join(out, name), rawSafetensors(part));
  }
  const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
  writeFileSync(join(out, 'model.safetensors.index.json'), `${JSON.stringify(index, null, 2)}\n`);
}

/** Opens a directory with openModelDir and reads every tensor through its source, in two pieces each. */
export async function readEveryTensor(dir: string, requireTokenizer = false): Promise<Float32Array> {
  const opened = await openModelDir(dir, { requireTokenizer });
  try {
    const layout = parameterLayout(opened.config);
    const out = new Float32Array(layout.total);
    for (const spec of layout.tensors) {
      const t = opened.source.tensor(spec.hfName);
      assert.equal(t.format, 'f32-read');
      if (t.format !== 'f32-read') continue;
      const half = Math.floor(spec.size / 2);
      t.read(0, half, out.subarray(spec.offset, spec.offset + half));
      t.read(half, spec.size - half, out.subarray(spec.offset + half, spec.offset + spec.size));
    }
    return out;
  } finally {
    opened.close();
  }
}
