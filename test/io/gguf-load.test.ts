// Loading a GPT-2 GGUF for our engine: F32 exactly, F16 converted once, Q8_0 kept as Q8_0; and every broken file
// refused with its name and the reason before anything is sized from its header.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GPTConfig } from '../../src/engine/config.js';
import { InferenceSession, InferenceWeights, type ModelSource } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { ggufBytes, ggufModel, loadGgufModel, openGgufFile } from '../../src/io/gguf.js';
import { maxAbsDiff } from '../helpers/fixtures.js';
import { smallTokenizerData } from './small-tokenizer.js';

const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-gguf-load-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const tokenizerData = smallTokenizerData();
const config: GPTConfig = {
  vocabSize: 512,
  nPositions: 32,
  nEmbd: 64,
  nLayer: 2,
  nHead: 4,
  layerNormEpsilon: 1e-5,
  tieWordEmbeddings: true,
  bosTokenId: 511,
  eosTokenId: 511,
};
const params = new Float32Array(parameterLayout(config).total);
let f32Bytes: Uint8Array;

before(() => {
  const rng = new Rng(8);
  for (let i = 0; i < params.length; i++) params[i] = rng.normal() * 0.2;
  f32Bytes = ggufBytes({ config, params, tokenizerData });
});

function write(name: string, bytes: Uint8Array): string {
  const file = join(tmp, name);
  writeFileSync(file, bytes);
  return file;
}

const PROMPT = [5, 100, 27, 300];

function logitsOf(weights: InferenceWeights): Float32Array {
  const s = new InferenceSession(weights);
  const out = Float32Array.from(s.prefill(PROMPT));
  for (const id of [7, 8, 9]) out.set(s.step(id));
  return out;
}

describe('loadGgufModel', () => {
  it('an F32 file gives back the parameters bit for bit, the config and the tokenizer', async () => {
    const g = await loadGgufModel(write('f32.gguf', f32Bytes));
    assert.equal(g.format, 'f32');
    assert.deepEqual(g.config, config);
    assert.ok(g.params);
    assert.equal(maxAbsDiff(g.params, params), 0);
    assert.deepEqual(g.tokenizerData.vocab, tokenizerData.vocab);
    assert.deepEqual(g.tokenizerData.merges, tokenizerData.merges);
    assert.deepEqual(g.tokenizerData.specialTokens, ['<|endoftext|>']);
  });

  it('an F16 file loads as float32 once, within f16 rounding of the original', async () => {
    const g = await loadGgufModel(
      write('f16.gguf', ggufBytes({ config, params, tokenizerData, quantize: 'f16' })),
    );
    assert.equal(g.format, 'f32');
    const diff = maxAbsDiff(g.params!, params);
    const logits = maxAbsDiff(
      logitsOf(new InferenceWeights(g.config, g.params)),
      logitsOf(new InferenceWeights(config, params)),
    );
    console.log(
      `F16 GGUF: weights within ${diff.toExponential(2)}, logits within ${logits.toExponential(2)} of F32`,
    );
    assert.ok(diff > 0 && diff < 1e-3, `${diff}`);
    assert.ok(logits < 1e-2);
  });

  it('a Q8_0 file keeps its Q8_0 blocks, read from the file a few rows at a time, and decodes as quantising the F32 model at load does', async () => {
    const bytes = ggufBytes({ config, params, tokenizerData, quantize: 'q8_0' });
    const g = await loadGgufModel(write('q8.gguf', bytes));
    assert.equal(g.format, 'q8_0');
    assert.equal(g.params, null, 'no float32 copy of the whole model');
    const qkv = g.source.tensor('transformer.h.0.attn.c_attn.weight');
    assert.equal(qkv.format, 'q8_0');
    if (qkv.format === 'q8_0') assert.equal(qkv.blocks.byteLength, 3 * 64 * 2 * 34);
    assert.equal(g.source.tensor('transformer.wpe.weight').format, 'f32', 'positions stay F32');
    const fromFile = logitsOf(new InferenceWeights(g.config, g.source));
    const atLoad = logitsOf(new InferenceWeights(config, params, { quantize: 'q8_0' }));
    const f32 = logitsOf(new InferenceWeights(config, params));
    console.log(
      `Q8_0 GGUF: logits equal quantising at load (diff ${maxAbsDiff(fromFile, atLoad)}), within ${maxAbsDiff(fromFile, f32).toExponential(2)} of F32`,
    );
    assert.equal(maxAbsDiff(fromFile, atLoad), 0);
    // The blocks read a few rows at a time (readRows, what the kernels' loader uses) are the file's blocks.
    if (qkv.format === 'q8_0') {
      assert.ok(qkv.readRows, 'the source reads rows on demand');
      const rows = new Uint8Array(3 * 2 * 34);
      qkv.readRows?.(5, 3, rows);
      assert.deepEqual(Array.from(rows), Array.from(qkv.blocks.subarray(5 * 2 * 34, 8 * 2 * 34)));
    }
    // Packed from whole tensors instead (a source without readRows): the same logits.
    const whole: ModelSource = {
      tensor(name) {
        const t = g.source.tensor(name);
        return t.format === 'q8_0' ? { format: 'q8_0', blocks: t.blocks } : t;
      },
    };
    assert.equal(maxAbsDiff(logitsOf(new InferenceWeights(g.config, whole)), fromFile), 0);
  });

  it('a header longer than the first bytes read is read in full; the tensors are the same', async () => {
    const file = write('q8-prefix.gguf', ggufBytes({ config, params, tokenizerData, quantize: 'q8_0' }));
    const small = ggufModel(openGgufFile(file, 64), file);
    const usual = await loadGgufModel(file);
    assert.deepEqual(small.config, usual.config);
    assert.deepEqual(small.tokenizerData, usual.tokenizerData);
    const a = logitsOf(new InferenceWeights(small.config, small.source));
    assert.equal(maxAbsDiff(a, logitsOf(new InferenceWeights(usual.config, usual.source))), 0);
    // Truncated inside the tensor data: refused from the header, naming the file.
    const cut = write('q8-cut.gguf', readFileSync(file).subarray(0, readFileSync(file).length - 10));
    assert.throws(
      () => openGgufFile(cut, 64),
      (e: Error) => e.message.startsWith(cut) && /runs past the end of the file/.test(e.message),
    );
  });
});

/** The byte offset just past tensor `name`'s name in the tensor table. */
function afterName(bytes: Uint8Array, name: string): number {
  const needle = new TextEncoder().encode(name);
  for (let i = 8; i + needle.length <= bytes.length; i++) {
    let hit = true;
    for (let j = 0; j < needle.length && hit; j++) hit = bytes[i + j] === needle[j];
    const len = new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(i - 8, true);
    if (hit && len === BigInt(needle.length)) return i + needle.length;
  }
  throw new Error(`${name} not found`);
}

function patched(fn: (bytes: Uint8Array, view: DataView) => void): Uint8Array {
  const bytes = Uint8Array.from(f32Bytes);
  fn(bytes, new DataView(bytes.buffer));
  return bytes;
}

describe('loadGgufModel refuses', () => {
  const cases: Array<[string, () => Uint8Array, RegExp]> = [
    [
      'another architecture',
      () =>
        patched((b) => {
          const at = afterName(b, 'general.architecture') + 4 + 8; // type, then the string's length
          b.set(new TextEncoder().encode('gptj'), at);
        }),
      /architecture is "gptj", not gpt2/,
    ],
    [
      'a missing tensor',
      () => patched((b) => b.set(new TextEncoder().encode('x'), afterName(b, 'blk.1.ffn_up.weight') - 1)),
      /no tensor blk\.1\.ffn_up\.weight/,
    ],
    [
      'a tensor of the wrong shape',
      () => patched((b, v) => v.setBigUint64(afterName(b, 'blk.0.attn_output.weight') + 4, 32n, true)),
      /blk\.0\.attn_output\.weight has dims \[32,64\], expected \[64,64\]/,
    ],
    [
      'a type it does not read',
      () => patched((b, v) => v.setUint32(afterName(b, 'blk.0.ffn_down.weight') + 4 + 16, 2, true)),
      /blk\.0\.ffn_down\.weight is ggml type 2; this engine reads F32, F16, BF16 and Q8_0/,
    ],
    [
      'Q8_0 rows that do not split into 32-blocks',
      () => {
        // n_embd 48: blk.0.attn_qkv.weight is [48, 144], whose rows cannot be Q8_0.
        const c48 = { ...config, nEmbd: 48 };
        const b = ggufBytes({
          config: c48,
          params: new Float32Array(parameterLayout(c48).total),
          tokenizerData,
        });
        new DataView(b.buffer).setUint32(afterName(b, 'blk.0.attn_qkv.weight') + 4 + 16, 8, true);
        return b;
      },
      /blk\.0\.attn_qkv\.weight is Q8_0 but its rows of 48 do not split into 32-blocks/,
    ],
    ['a truncated file', () => f32Bytes.subarray(0, f32Bytes.length - 100), /runs past the end of the file/],
    [
      'a tensor whose dims claim more than the file holds',
      () => patched((b, v) => v.setBigUint64(afterName(b, 'token_embd.weight') + 4 + 8, 1n << 40n, true)),
      /token_embd\.weight \(F32, \d+ bytes\) runs past the end of the file/,
    ],
    [
      'a tokenizer that does not match the embedding',
      () => patched((b, v) => v.setBigUint64(afterName(b, 'token_embd.weight') + 4 + 8, 511n, true)),
      /the tokenizer has 512 tokens but token_embd\.weight holds 511 rows/,
    ],
  ];
  for (const [what, make, reason] of cases) {
    it(what, async () => {
      const file = write('bad.gguf', make());
      await assert.rejects(loadGgufModel(file), (e: Error) => {
        assert.ok(e.message.startsWith(`${file}: `), `names the file: ${e.message}`);
        assert.match(e.message, reason);
        return true;
      });
    });
  }
});
