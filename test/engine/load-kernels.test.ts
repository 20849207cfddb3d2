// The kernels that run once over every weight at load: the non-finite scan, quantising to Q8_0 (the bytes of
// the plain-JS reference), packing Q8_0 blocks (the JS packing), the int8 screen's copy (within its bound),
// and quantising at load from a source read a piece at a time.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { firstNonFinite } from '../../src/engine/finite.js';
import { Q8Matrix, quantizeQ8_0 } from '../../src/engine/formats/q8-0.js';
import { packScreenRows } from '../../src/engine/head/screen.js';
import { InferenceSession, InferenceWeights, type ModelSource } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { type WasmArena, wasmArena } from '../../src/engine/wasm/runtime.js';
import { maxAbsDiff } from '../helpers/fixtures.js';

const arena = wasmArena();
const skip = arena ? false : 'needs the WebAssembly kernels';

/** rows·cols floats in the arena: normal values, with every pattern `special` adds. */
function floats(a: WasmArena, n: number, seed: number, special?: (x: Float32Array) => void): Float32Array {
  const x = a.f32(a.alloc(n * 4), n);
  const rng = new Rng(seed);
  for (let i = 0; i < n; i++) x[i] = rng.normal() * (i % 13 === 0 ? 3 : 0.2);
  special?.(x);
  return x;
}

/** Blocks with ties (x·127/amax exactly k + ½), zeros, a lone amax, f16-subnormal and overflowing scales. */
function hard(x: Float32Array): void {
  for (let i = 0; i < 32 && i < x.length; i++) x[i] = i === 0 ? 127 : (i % 2 ? 0.5 : -0.5) + (i - 16);
  for (let i = 32; i < 64 && i < x.length; i++) x[i] = 0;
  for (let i = 64; i < 96 && i < x.length; i++) x[i] = i === 70 ? -1e-6 : 3e-9 * (i - 80);
  for (let i = 96; i < 128 && i < x.length; i++) x[i] = i === 100 ? 1e7 : 1;
}

describe('load-time kernels', { skip }, () => {
  const a = arena as WasmArena;

  it('firstNonFinite finds the first NaN or ±Infinity anywhere (kernel and JS paths agree), finite extremes pass', () => {
    const n = 100_003;
    const x = floats(a, n, 1);
    x[5] = 3.4028234663852886e38;
    x[6] = -1.4e-45;
    const plain = new Float32Array(n);
    let checked = 0;
    for (const [at, v] of [
      [-1, 0],
      [0, Number.NaN],
      [15, Number.POSITIVE_INFINITY],
      [16, Number.NEGATIVE_INFINITY],
      [65_537, Number.NaN],
      [n - 1, Number.POSITIVE_INFINITY],
    ] as const) {
      const saved = at >= 0 ? x[at] : 0;
      if (at >= 0) x[at] = v;
      plain.set(x);
      assert.equal(firstNonFinite(x), at, `kernel, ${v} at ${at}`);
      assert.equal(firstNonFinite(plain), at, `JS, ${v} at ${at}`);
      // A second bad value later does not hide the first.
      if (at >= 0 && at + 7 < n) {
        x[at + 7] = Number.NaN;
        assert.equal(firstNonFinite(x), at);
        x[at + 7] = 0;
      }
      if (at >= 0) x[at] = saved;
      checked++;
    }
    console.log(`${checked} placements over ${n} floats: kernel and JS name the same index`);
  });

  it('q8WeightRows and q8WeightColumns write the bytes quantizeQ8_0 writes (row-major and Conv1D-stored)', () => {
    let blocks = 0;
    for (const [rows, cols] of [
      [1, 32],
      [5, 64],
      [70, 128],
      [258, 96],
    ] as const) {
      for (const transposed of [false, true]) {
        const src = floats(a, rows * cols, rows + cols, hard);
        const want = transposed
          ? quantizeQ8_0(src, rows, cols, 1, rows)
          : quantizeQ8_0(src, rows, cols, cols, 1);
        const dst = a.alloc(want.length);
        const tmp = a.alloc(512);
        if (transposed) a.kernels.q8WeightColumns(dst, src.byteOffset, rows, rows, cols, tmp);
        else a.kernels.q8WeightRows(dst, src.byteOffset, rows, cols);
        const got = a.u8(dst, want.length);
        let differ = 0;
        for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) differ++;
        assert.equal(differ, 0, `${rows}×${cols}${transposed ? ' transposed' : ''}: ${differ} bytes differ`);
        blocks += want.length / 34;
      }
    }
    console.log(
      `${blocks} blocks identical to the JS reference (ties, zeros, subnormal and overflowing scales)`,
    );
  });

  it('a Q8Matrix packed or quantised by the kernels equals the plain-JS packing, −128 weights flagged', () => {
    for (const [rows, cols, minus128] of [
      [7, 64, false],
      [300, 96, true],
    ] as const) {
      const src = floats(a, rows * cols, 9, hard);
      const blocks = quantizeQ8_0(src, rows, cols, cols, 1);
      if (minus128) blocks[34 * 5 + 2 + 3] = 0x80;
      const js = new Q8Matrix(rows, cols, null, { blocks, alloc: null });
      const packed = new Q8Matrix(rows, cols, a, { blocks, alloc: (b) => a.alloc(b) });
      assert.equal(packed.wide, minus128);
      assert.equal(js.wide, minus128);
      assert.deepEqual(Array.from(packed.q), Array.from(js.q));
      assert.deepEqual(Array.from(packed.d), Array.from(js.d));
      if (minus128) continue;
      // Quantised in pieces from float32, row-major and from the transposed storage.
      const rowWise = new Q8Matrix(rows, cols, a, { blocks: null, alloc: (b) => a.alloc(b) });
      rowWise.quantiseRows(src.subarray(0, 3 * cols), 0, 3);
      rowWise.quantiseRows(src.subarray(3 * cols), 3, rows - 3);
      assert.deepEqual(Array.from(rowWise.q), Array.from(js.q));
      assert.deepEqual(Array.from(rowWise.d), Array.from(js.d));
      const stored = a.f32(a.alloc(rows * cols * 4), rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) stored[c * rows + r] = src[r * cols + c];
      const colWise = new Q8Matrix(rows, cols, a, { blocks: null, alloc: (b) => a.alloc(b) });
      colWise.quantiseRows(stored, 0, rows, true);
      assert.deepEqual(Array.from(colWise.q), Array.from(js.q));
      assert.deepEqual(Array.from(colWise.d), Array.from(js.d));
    }
    console.log('kernel packing = JS packing; quantised in pieces, row-major and transposed, = the same');
  });

  it('the int8 screen keeps every weight within its bound of scale·q, in the interleaved layout', () => {
    for (const [V, C] of [
      [130, 48],
      [1030, 33],
    ] as const) {
      const w = floats(a, V * C, V, hard);
      w.fill(0, 7 * C, 8 * C); // a row of zeros: scale 0
      const s = packScreenRows(a, w, V, C, null);
      const rows = s.groups * 64;
      const q = a.i8(s.q, rows * s.C2);
      const scale = a.f32(s.scale, rows);
      let worst = 0;
      let maxAbs = 0;
      let maxL1 = 0;
      for (let v = 0; v < V; v++) {
        let l1 = 0;
        for (let c = 0; c < s.C2; c++) {
          const qc = q[(v >> 2) * 4 * s.C2 + (v & 3) * 2 + (c >> 1) * 8 + (c & 1)];
          if (c >= C) {
            assert.equal(qc, 0, 'padding channel is zero');
            continue;
          }
          const x = w[v * C + c];
          maxAbs = Math.max(maxAbs, Math.abs(x));
          l1 += Math.abs(qc);
          const err = Math.abs(x - scale[v] * qc);
          if (scale[v] > 0) worst = Math.max(worst, err / scale[v]);
          else assert.equal(x, 0);
        }
        maxL1 = Math.max(maxL1, scale[v] * l1);
      }
      for (let v = V; v < rows; v++) assert.equal(scale[v], 0, 'padding rows have scale 0');
      console.log(`V ${V}, C ${C}: largest |w − scale·q| / scale = ${worst}`);
      assert.ok(worst <= 0.5 + 2 ** -17, `error ${worst} of a step`);
      assert.equal(s.maxAbs, maxAbs);
      assert.ok(Math.abs(s.maxL1 - maxL1) <= 1e-9 * maxL1, `maxL1 ${s.maxL1} vs ${maxL1}`);
    }
  });

  it('quantising at load from a source read in pieces gives the weights of quantising the whole float32 model', () => {
    const config = {
      vocabSize: 5000,
      nPositions: 32,
      nEmbd: 64,
      nLayer: 2,
      nHead: 4,
      layerNormEpsilon: 1e-5,
      tieWordEmbeddings: true,
      bosTokenId: 0,
      eosTokenId: 0,
    };
    const layout = parameterLayout(config);
    const rng = new Rng(12);
    const params = new Float32Array(layout.total);
    for (let i = 0; i < params.length; i++) params[i] = rng.normal() * 0.1;
    let largestRead = 0;
    const source: ModelSource = {
      tensor(name) {
        const spec = layout.byName.get(name);
        if (!spec) throw new Error(name);
        return {
          format: 'f32-read',
          read(start, count, into) {
            largestRead = Math.max(largestRead, count);
            into.set(params.subarray(spec.offset + start, spec.offset + start + count));
          },
        };
      },
    };
    const whole = new InferenceWeights(config, params, { quantize: 'q8_0' });
    const pieces = new InferenceWeights(config, source, { quantize: 'q8_0' });
    const ids = [1, 4999, 7, 42];
    const diff = maxAbsDiff(
      new InferenceSession(pieces).prefill(ids),
      new InferenceSession(whole).prefill(ids),
    );
    console.log(`logits differ by ${diff}; largest single read ${largestRead} floats of ${layout.total}`);
    assert.equal(diff, 0);
    assert.equal(pieces.format, 'q8_0');
    // No read is the whole embedding: it is quantised a few rows at a time.
    assert.ok(largestRead < config.vocabSize * config.nEmbd, `read ${largestRead} floats at once`);
  });
});
