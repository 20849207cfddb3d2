// The decode path's kernels against their JS definitions: the streaming f32 product (each row the same bits alone or
// among others, whatever column split), layer norm (bit for bit), GELU, attention, and the row-major LM head
// of wide models (full logits, candidates, hot rows and the int8 screen all agreeing with a full scan).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GPTConfig } from '../../src/engine/config.js';
import { HotRowsHead } from '../../src/engine/head/hot-rows.js';
import { JsRowOps } from '../../src/engine/infer/row-ops.js';
import { InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { matmulForwardLoops } from '../../src/engine/matmul.js';
import { Rng } from '../../src/engine/rng.js';
import { wasmArena } from '../../src/engine/wasm/runtime.js';
import { maxAbsDiff } from '../helpers/fixtures.js';
import { randomArray } from '../helpers/random.js';

const arena = wasmArena();

function place(a: Float32Array): Float32Array {
  const k = arena!;
  const view = k.f32(k.alloc(Math.max(4, a.length * 4)), a.length);
  view.set(a);
  return view;
}

function wideModel(
  V: number,
  C: number,
  seed: number,
  nHead = 4,
): { config: GPTConfig; params: Float32Array } {
  const config: GPTConfig = {
    vocabSize: V,
    nPositions: 16,
    nEmbd: C,
    nLayer: 1,
    nHead,
    layerNormEpsilon: 1e-5,
    tieWordEmbeddings: true,
    bosTokenId: 0,
    eosTokenId: 0,
  };
  const rng = new Rng(seed);
  const params = new Float32Array(parameterLayout(config).total);
  for (let i = 0; i < params.length; i++) params[i] = rng.normal() * 0.05;
  return { config, params };
}

function scanTop(logits: Float32Array, k: number): { ids: number[]; values: number[] } {
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  const ids = order.slice(0, k);
  return { ids, values: ids.map((i) => logits[i]) };
}

describe('decode kernels', { skip: arena ? false : 'needs the WebAssembly kernels' }, () => {
  it('linearRows: each row the bits it gets alone, any column split, within float rounding of the JS loops', () => {
    const k = arena!;
    const rng = new Rng(3);
    let worst = 0;
    let rows = 0;
    for (const [IC, OC] of [
      [1, 1],
      [3, 5],
      [16, 48],
      [37, 70],
      [64, 3 * 64],
      [256, 1030],
    ]) {
      const w = place(randomArray(rng, IC * OC, 0.5));
      const bias = place(randomArray(rng, OC));
      for (const n of [1, 2, 3, 8]) {
        const x = place(randomArray(rng, n * IC));
        const out = place(new Float32Array(n * OC));
        k.kernels.linearRows(out.byteOffset, x.byteOffset, w.byteOffset, bias.byteOffset, n, IC, OC, 0, OC);
        const want = new Float32Array(n * OC);
        matmulForwardLoops(want, x, w, bias, n, IC, OC);
        worst = Math.max(worst, maxAbsDiff(out, want) / Math.sqrt(IC));
        for (let r = 0; r < n; r++) {
          // Alone, in two column pieces split at a multiple of 4.
          const one = place(new Float32Array(OC));
          const cut = Math.min(OC, 4 * Math.floor(OC / 8));
          const xr = x.byteOffset + r * IC * 4;
          k.kernels.linearRows(one.byteOffset, xr, w.byteOffset, bias.byteOffset, 1, IC, OC, 0, cut);
          k.kernels.linearRows(one.byteOffset, xr, w.byteOffset, bias.byteOffset, 1, IC, OC, cut, OC);
          for (let o = 0; o < OC; o++)
            if (!Object.is(one[o], out[r * OC + o]))
              assert.fail(
                `IC ${IC} OC ${OC} n ${n}: row ${r} column ${o} alone ${one[o]}, among ${out[r * OC + o]}`,
              );
          rows++;
        }
      }
    }
    console.log(
      `linearRows: ${rows} rows identical alone and batched; vs JS loops ${worst.toExponential(2)} (÷√IC)`,
    );
    assert.ok(worst < 1e-6);
  });

  it('layer norm gives the JS bits; GELU and attention are within float rounding of the JS loops', () => {
    const k = arena!;
    const rng = new Rng(4);
    const js = new JsRowOps(8, 40);
    for (const C of [16, 15, 48, 768]) {
      const n = 3;
      const x = place(randomArray(rng, n * C, 3));
      const w = place(randomArray(rng, C));
      const b = place(randomArray(rng, C));
      const out = place(new Float32Array(n * C));
      k.kernels.layerNormRows(out.byteOffset, x.byteOffset, w.byteOffset, b.byteOffset, n, C, 1e-5);
      const want = new Float32Array(n * C);
      js.layerNorm(want, x, w, b, n, C, 1e-5);
      assert.deepEqual(Array.from(out), Array.from(want), `layer norm C ${C}`);
    }
    const g = place(Float32Array.from({ length: 4099 }, (_, i) => (i - 2049) / 150 + (i % 7) * 1e-3));
    g[5] = -1e6;
    g[6] = 1e6;
    const gOut = place(new Float32Array(g.length));
    k.kernels.geluRows(gOut.byteOffset, g.byteOffset, g.length);
    const gWant = new Float32Array(g.length);
    js.gelu(gWant, g, g.length);
    let geluWorst = 0;
    for (let i = 0; i < g.length; i++)
      geluWorst = Math.max(geluWorst, Math.abs(gOut[i] - gWant[i]) / Math.max(1, Math.abs(gWant[i])));
    assert.ok(geluWorst < 1e-6, `GELU within ${geluWorst} of the JS one`);
    let worst = 0;
    for (const [NH, hs, T] of [
      [1, 16, 1],
      [4, 12, 33],
      [3, 15, 7],
      [12, 64, 40],
    ]) {
      const C = NH * hs;
      const q = place(randomArray(rng, C, 2));
      const keys = place(randomArray(rng, 40 * C, 2));
      const values = place(randomArray(rng, 40 * C));
      const out = place(new Float32Array(C));
      const scores = k.alloc(44 * 4);
      k.kernels.attendRow(
        out.byteOffset,
        q.byteOffset,
        keys.byteOffset,
        values.byteOffset,
        T,
        NH,
        hs,
        1 / Math.sqrt(hs),
        scores,
      );
      const want = new Float32Array(C);
      js.attend(want, 0, q, 0, keys, values, T, NH, hs);
      worst = Math.max(worst, maxAbsDiff(out, want));
    }
    console.log(
      `layer norm identical to JS; GELU within ${geluWorst.toExponential(2)}, attention within ${worst.toExponential(2)}`,
    );
    assert.ok(worst < 1e-5);
  });

  it('a wide model reads its head in place: full logits, top-k and the int8 screen agree with a scan (n_embd 544 > 516)', () => {
    // n_embd 544: the screen's int16 input must stay below 32767 so its int32 sums cannot overflow.
    const { config, params } = wideModel(4160, 544, 7);
    const weights = new InferenceWeights(config, params);
    assert.equal(weights.packedHead?.blocks, 0, 'no packed copy of a wide head');
    assert.equal(weights.headStrategy, 'int8-screen');
    const screened = new InferenceSession(weights);
    const full = new InferenceSession(new InferenceWeights(config, params, { lmHead: 'full' }));
    const ids = new Int32Array(65);
    const values = new Float64Array(65);
    let logits = Float32Array.from(full.prefill([1, 2, 3]));
    screened.prefill([1, 2, 3]);
    let compared = 0;
    for (let step = 0; step < 6; step++) {
      for (const k of [1, 50, 65]) {
        for (const s of [screened, full]) {
          assert.ok(s.lmHead.top(0, k, ids, values), `step ${step} k ${k}: ${s.lmHead.name} declined`);
          const want = scanTop(logits, k);
          assert.deepEqual(
            Array.from(ids.subarray(0, k)),
            want.ids,
            `step ${step} k ${k}: ${s.lmHead.name} ids`,
          );
          assert.deepEqual(Array.from(values.subarray(0, k)), want.values, `step ${step} k ${k}: values`);
          compared += k;
        }
        assert.equal(screened.lmHead.lastSource, 'int8-screen');
      }
      logits = Float32Array.from(full.step(step * 31));
      screened.step(step * 31);
    }
    console.log(`wide head: ${compared} top logits from the screen and the group maxima equal a scan`);
  });

  it('a wide model with hot rows scores them in place, bit-identical to its full head', () => {
    const { config, params } = wideModel(600, 160, 9, 4);
    const layout = parameterLayout(config);
    const wte = layout.byName.get('transformer.wte.weight')!;
    const hot = Array.from({ length: 40 }, (_, i) => i * 15);
    const isHot = new Set(hot);
    for (let v = 0; v < config.vocabSize; v++)
      if (!isHot.has(v))
        for (let c = 0; c < config.nEmbd; c++) params[wte.offset + v * config.nEmbd + c] *= 0.02;
    const weights = new InferenceWeights(config, params);
    assert.deepEqual(Array.from(weights.hotRows?.ids ?? []), hot);
    assert.equal(weights.hotRows?.blocks, 0, 'a wide head keeps no packed copy of its hot rows');
    const session = new InferenceSession(weights);
    const head = session.lmHead;
    assert.ok(head instanceof HotRowsHead);
    let worst = 0;
    for (let step = 0; step < 8; step++) {
      session.prefill([step + 1]);
      const hotLogits = Float32Array.from(head.hotLogits(0));
      const full = head.logits(0);
      for (let i = 0; i < hot.length; i++) worst = Math.max(worst, Math.abs(full[hot[i]] - hotLogits[i]));
      session.reset();
    }
    console.log(`wide hot rows vs full head: largest abs diff ${worst}`);
    assert.equal(worst, 0);
  });
});
