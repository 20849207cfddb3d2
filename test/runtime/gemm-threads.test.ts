// Proves the two-thread gemm gives exactly the one-thread results (and the JS loops' within float tolerance) on
// odd shapes, and that its worker threads start and stop cleanly.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import {
  gemmThreads,
  matmulBackward,
  matmulForward,
  matmulTransposedBackward,
  matmulTransposedForward,
} from '../../src/engine/matmul.js';
import { Rng } from '../../src/engine/rng.js';
import { setWasmKernelsEnabled } from '../../src/engine/wasm/runtime.js';
import { enableGemmThreads, stopGemmThreads } from '../../src/runtime/gemm-threads.js';
import { maxAbsDiff } from '../helpers/fixtures.js';
import { randomArray } from '../helpers/random.js';

/** Every product of matmul.ts on fixed random operands of shape (N, IC, OC). */
function products(N: number, IC: number, OC: number) {
  const rng = new Rng(N * 7919 + IC * 31 + OC);
  const inp = randomArray(rng, N * IC);
  const w = randomArray(rng, IC * OC);
  const bias = randomArray(rng, OC);
  const dout = randomArray(rng, N * OC);
  const out = new Float32Array(N * OC);
  matmulForward(out, inp, w, bias, N, IC, OC);
  const dinp = randomArray(new Rng(1), N * IC);
  const dw = randomArray(new Rng(2), IC * OC);
  matmulBackward(dinp, dw, null, dout, inp, w, N, IC, OC);
  const outT = new Float32Array(N * OC);
  matmulTransposedForward(outT, inp, w, N, IC, OC);
  const dinpT = randomArray(new Rng(3), N * IC);
  const dwT = randomArray(new Rng(4), OC * IC);
  matmulTransposedBackward(dinpT, dwT, dout, inp, w, N, IC, OC);
  return { out, dinp, dw, outT, dinpT, dwT };
}

// Each at least 4M multiply-adds (the split threshold); edges of 4×8 tiles, k not a multiple of 256, 1×N, N×1.
const SHAPES: [number, number, number][] = [
  [257, 300, 70],
  [131, 70, 517],
  [1, 4100, 1030],
  [4099, 1030, 1],
  [515, 1, 8195],
];

describe('gemm on two threads', () => {
  after(() => stopGemmThreads());

  it('equals the one-thread gemm bit for bit and the JS loops within 1e-5 (relative)', async () => {
    const one = SHAPES.map((s) => products(...s));
    setWasmKernelsEnabled(false);
    const js = SHAPES.map((s) => products(...s));
    setWasmKernelsEnabled(true);
    assert.equal(await enableGemmThreads(2), 2);
    assert.equal(gemmThreads(), 2);
    const two = SHAPES.map((s) => products(...s));
    let worst = 0;
    SHAPES.forEach(([N, IC, OC], i) => {
      for (const key of Object.keys(two[i]) as (keyof (typeof two)[number])[]) {
        const what = `${key} N ${N} IC ${IC} OC ${OC}`;
        assert.deepEqual(two[i][key], one[i][key], `${what}: two threads differ from one`);
        const scale = js[i][key].reduce((m, v) => Math.max(m, Math.abs(v)), 1);
        const diff = maxAbsDiff(two[i][key], js[i][key]) / scale;
        worst = Math.max(worst, diff);
        assert.ok(diff <= 1e-5, `${what}: relative diff ${diff} from the JS loops`);
      }
    });
    console.log(`two-thread gemm vs JS loops: largest relative diff ${worst.toExponential(2)}`);
  });

  it('stops its worker and falls back to one thread; rejects a bad thread count', async () => {
    await enableGemmThreads(2);
    await stopGemmThreads();
    assert.equal(gemmThreads(), 1);
    const again = products(257, 300, 70);
    assert.ok(again.outT.every(Number.isFinite));
    await assert.rejects(enableGemmThreads(0), /integer from 1 to 64, got 0/);
    await assert.rejects(enableGemmThreads(2.5), /integer from 1 to 64/);
  });
});

describe('decode on two threads', () => {
  after(() => stopGemmThreads());

  it('gives the logits and top-k of one thread bit for bit: a prompt, f32 products, the row-major head and its int8 screen, q8_0', async () => {
    // n_embd 192, 4 160 tokens: every product, the head and the screen pass the split threshold.
    const config = {
      vocabSize: 4160,
      nPositions: 128,
      nEmbd: 192,
      nLayer: 2,
      nHead: 4,
      layerNormEpsilon: 1e-5,
      tieWordEmbeddings: true,
      bosTokenId: 0,
      eosTokenId: 0,
    };
    const params = randomArray(new Rng(12), parameterLayout(config).total, 0.1);
    const run = () =>
      ['f32', 'q8_0', 'full'].map((kind) => {
        const options =
          kind === 'q8_0'
            ? { quantize: 'q8_0' as const }
            : kind === 'full'
              ? { lmHead: 'full' as const }
              : {};
        const s = new InferenceSession(new InferenceWeights(config, params, options));
        const ids = new Int32Array(50);
        const values = new Float64Array(50);
        const out: number[] = [];
        // A 100-token prompt: its products and attention are split too.
        let logits = Float32Array.from(s.prefill(Array.from({ length: 100 }, (_, i) => (i * 41) % 4160)));
        for (let t = 0; t < 6; t++) {
          out.push(...logits);
          assert.ok(s.lmHead.top(0, 50, ids, values));
          out.push(...ids, ...values);
          logits = Float32Array.from(s.step((t * 131) % config.vocabSize));
        }
        return out;
      });
    await stopGemmThreads();
    const one = run();
    assert.equal(await enableGemmThreads(2), 2);
    const two = run();
    for (const [i, kind] of ['f32 (int8 screen)', 'q8_0', 'f32 (full head)'].entries())
      assert.equal(maxAbsDiff(two[i], one[i]), 0, `${kind}: two threads differ from one`);
    console.log(
      `decode on two threads: ${one.reduce((s, a) => s + a.length, 0)} logits and top-k values identical`,
    );
  });
});
