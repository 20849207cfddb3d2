// Proves the WebAssembly SIMD kernels compute what the pure-JS paths compute, and that the embedded bytes are current.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileKernels } from '../../scripts/build-wasm.js';
import { findHotRows, InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import {
  matmulBackward,
  matmulForward,
  matmulTransposedBackward,
  matmulTransposedForward,
} from '../../src/engine/matmul.js';
import { Rng } from '../../src/engine/rng.js';
import { KERNELS_RELAXED_WASM_BASE64, KERNELS_WASM_BASE64 } from '../../src/engine/wasm/kernels-wasm.js';
import { setWasmKernelsEnabled, wasmArena } from '../../src/engine/wasm/runtime.js';
import { argmax, SamplerScratch, sampleToken } from '../../src/generate/sampler.js';
import { maxAbsDiff } from '../helpers/fixtures.js';
import { randomArray } from '../helpers/random.js';

const arena = wasmArena();

/** Runs `fn` on the pure-JS paths (kernels off), then switches them back on. */
function withoutKernels<T>(fn: () => T): T {
  setWasmKernelsEnabled(false);
  try {
    return fn();
  } finally {
    setWasmKernelsEnabled(true);
  }
}

/** A one-layer, one-head config of vocabulary V and width C: models whose cost is their LM head. */
function headOnlyConfig(V: number, C: number) {
  return {
    vocabSize: V,
    nPositions: 8,
    nEmbd: C,
    nLayer: 1,
    nHead: 1,
    layerNormEpsilon: 1e-5,
    tieWordEmbeddings: true,
    bosTokenId: 0,
    eosTokenId: 0,
  };
}

describe('WebAssembly kernels', () => {
  it('are available on this Node (SIMD + shared memory)', () => {
    assert.ok(arena, 'wasmArena() returned null: the engine would fall back to pure JS');
  });

  it('the committed kernels-wasm.ts holds exactly what the AssemblyScript source compiles to', async () => {
    const fresh = Buffer.from(await compileKernels()).toString('base64');
    assert.equal(KERNELS_WASM_BASE64, fresh, 'stale kernels-wasm.ts: run `npm run build:wasm`');
    const relaxed = Buffer.from(await compileKernels(true)).toString('base64');
    assert.equal(KERNELS_RELAXED_WASM_BASE64, relaxed, 'stale relaxed build: run `npm run build:wasm`');
    assert.notEqual(relaxed, fresh, 'the relaxed build differs (fused multiply-adds)');
  });

  it('lmHead equals matmulTransposedForward for vocabularies that do and do not fill the last block', () => {
    assert.ok(arena);
    const rng = new Rng(3);
    let worst = 0;
    for (const [V, C] of [
      [16, 4],
      [37, 16],
      [1000, 48],
      [50257, 16],
    ]) {
      const config = headOnlyConfig(V, C);
      const params = randomArray(rng, parameterLayout(config).total, 0.5);
      const weights = new InferenceWeights(config, params);
      const head = weights.packedHead;
      assert.ok(head);
      const x = randomArray(rng, C);
      const xPtr = arena.alloc(C * 4);
      const outPtr = arena.alloc(head.blocks * 64);
      arena.f32(xPtr, C).set(x);
      arena.kernels.lmHead(outPtr, xPtr, head.ptr, head.blocks, C);
      const expected = new Float32Array(V);
      matmulTransposedForward(expected, x, weights.views!.lmHead, 1, C, V);
      const diff = maxAbsDiff(arena.f32(outPtr, V), expected);
      worst = Math.max(worst, diff);
      assert.ok(diff <= 1e-5, `V ${V} C ${C}: diff ${diff}`);
    }
    console.log(`lmHead vs JS: largest abs diff ${worst.toExponential(2)}`);
  });

  it('packHeadRows packs the head exactly as [blocks][C][16] with zero padding, row norms bit for bit as a JS f64 scan, and the hot rows packed alike', () => {
    assert.ok(arena);
    const rng = new Rng(29);
    let worstNorm = 0;
    let rowsChecked = 0;
    let hotRowsChecked = 0;
    // C multiples of 4 take the 4×4 tile path, the others the scalar one; V = 50257 spans many 256 KiB chunks.
    for (const [V, C, inArena] of [
      [16, 4, false],
      [37, 16, false],
      [1000, 6, false],
      [4099, 64, false],
      [50257, 16, false],
      [5003, 12, true],
    ] as const) {
      const config = headOnlyConfig(V, C);
      const total = parameterLayout(config).total;
      // inArena: the parameters themselves live in WebAssembly memory, so rows are packed without a copy.
      const params: Float32Array = inArena
        ? arena.f32(arena.alloc(total * 4), total)
        : new Float32Array(total);
      params.set(randomArray(rng, total, 0.5));
      const weights = new InferenceWeights(config, params, { head: 'share' });
      const head = weights.packedHead;
      assert.ok(head);
      const packed: Float32Array = arena.f32(head.ptr, head.blocks * 16 * C);
      const w = weights.views!.lmHead;
      for (let r = 0; r < head.blocks * 16; r++) {
        for (let c = 0; c < C; c++) {
          const want = r < V ? w[r * C + c] : 0;
          const got: number = packed[Math.floor(r / 16) * 16 * C + c * 16 + (r % 16)];
          if (got !== want) assert.fail(`V ${V} C ${C}: row ${r} channel ${c} packed ${got}, want ${want}`);
        }
      }
      rowsChecked += head.blocks * 16;
      // The hot rows come from these norms: with a planted gap they must be exactly the rows above it.
      const scaled = new Float32Array(params);
      for (let r = 0; r < V; r += 7) for (let c = 0; c < C; c++) scaled[r * C + c] *= 64;
      const hot = new InferenceWeights(config, scaled).hotRows;
      assert.ok(hot, `V ${V} C ${C}: the planted gap gives hot rows`);
      // The hot rows are packed as a head of their own (gathered from the packed head), zero-padded.
      const hotPacked: Float32Array = arena.f32(hot.ptr, hot.blocks * 16 * C);
      assert.equal(hot.blocks, Math.ceil(hot.ids.length / 16), `V ${V} C ${C}: hot blocks`);
      for (let i = 0; i < hot.blocks * 16; i++) {
        for (let c = 0; c < C; c++) {
          const expected: number = i < hot.ids.length ? scaled[hot.ids[i] * C + c] : 0;
          const got: number = hotPacked[Math.floor(i / 16) * 16 * C + c * 16 + (i % 16)];
          if (got !== expected)
            assert.fail(`V ${V} C ${C}: hot row ${i} channel ${c} packed ${got}, want ${expected}`);
        }
      }
      hotRowsChecked += hot.blocks * 16;
      const jsNorms = Array.from({ length: V }, (_, r) => {
        let sum = 0;
        for (let c = 0; c < C; c++) sum += scaled[r * C + c] * scaled[r * C + c];
        return Math.sqrt(sum);
      });
      const want = findHotRows(
        weights.views!.lmHead.map((_, i) => scaled[i]),
        V,
        C,
      );
      assert.deepEqual(Array.from(hot.ids), Array.from(want?.ids ?? []), `V ${V} C ${C}: hot rows`);
      assert.equal(hot.coldMaxNorm, want?.coldMaxNorm, `V ${V} C ${C}: largest cold norm`);
      const cold = jsNorms.filter((_, r) => r % 7 !== 0);
      worstNorm = Math.max(worstNorm, Math.abs(hot.coldMaxNorm - Math.max(...cold)));
    }
    console.log(
      `packHeadRows: ${rowsChecked} packed rows and ${hotRowsChecked} packed hot rows identical to the layout; largest cold-norm difference ${worstNorm}`,
    );
  });

  it('hotRows finds the same hot rows and largest cold norm as findHotRows, gaps, ties, zeros, Infinity and NaN included', () => {
    assert.ok(arena);
    const rng = new Rng(31);
    const cases: Array<[string, Float64Array]> = [];
    const make = (n: number, fill: (i: number) => number) =>
      Float64Array.from({ length: n }, (_, i) => fill(i));
    for (const n of [1, 2, 3, 4, 5, 17, 1000, 50257]) {
      cases.push([`uniform ${n}`, make(n, () => rng.random())]);
      cases.push([`gap ${n}`, make(n, (i) => (i % 9 === 0 ? 10 + rng.random() : rng.random()))]);
      cases.push([`tied top ${n}`, make(n, (i) => (i % 5 === 0 ? 7 : rng.random()))]);
    }
    cases.push(['zeros below', make(100, (i) => (i < 10 ? 1 + i : 0))]);
    cases.push(['all zero', make(64, () => 0)]);
    cases.push(['Infinity rows', make(300, (i) => (i === 4 || i === 77 ? Infinity : rng.random()))]);
    cases.push([
      'NaN rows',
      make(300, (i) => (i % 50 === 3 ? Number.NaN : i % 10 === 0 ? 5 : rng.random() * 0.1)),
    ]);
    cases.push(['two gaps', make(999, (i) => (i < 3 ? 1000 : i < 30 ? 50 : rng.random()))]);
    cases.push(['ratio exactly 3', make(12, (i) => (i < 2 ? 3 : 1))]);
    cases.push(['a subnormal floor', make(40, (i) => (i < 5 ? 1e-300 : 5e-324))]);
    let hotTotal = 0;
    for (const [name, norms] of cases) {
      const n = norms.length;
      const normsPtr = arena.alloc(n * 8);
      const idsPtr = arena.alloc(n * 4);
      const coldPtr = arena.alloc(8);
      const work = arena.alloc(16 * n + 8192);
      arena.f64(normsPtr, n).set(norms);
      const count = arena.kernels.hotRows(normsPtr, n, 3, idsPtr, coldPtr, work);
      const want = findHotRows(new Float32Array(n), n, 1, norms);
      assert.deepEqual(arena.f64(normsPtr, n), norms, `${name}: the norms were changed`);
      if (!want) {
        assert.equal(count, -1, `${name}: no gap, but the kernel found ${count} hot rows`);
        continue;
      }
      assert.deepEqual(
        Array.from(arena.i32(idsPtr, Math.max(0, count))),
        Array.from(want.ids),
        `${name}: ids`,
      );
      assert.equal(arena.f64(coldPtr, 1)[0], want.coldMaxNorm, `${name}: largest cold norm`);
      hotTotal += count;
    }
    console.log(`hotRows: ${cases.length} norm sets, ${hotTotal} hot rows, all as findHotRows`);
  });

  it("lmHeadMax writes lmHead's logits bit for bit plus each 64-row group's maximum; collectAtLeast finds every logit ≥ a cut", () => {
    assert.ok(arena);
    const rng = new Rng(13);
    let checked = 0;
    for (const blocks of [1, 2, 3, 4, 5, 6, 7, 8, 9, 13]) {
      const C = 1 + (blocks % 5) * 3;
      const packed = randomArray(rng, blocks * 16 * C);
      const wPtr = arena.alloc(packed.length * 4);
      arena.f32(wPtr, packed.length).set(packed);
      const x = randomArray(rng, C);
      const xPtr = arena.alloc(C * 4);
      arena.f32(xPtr, C).set(x);
      const groups = Math.ceil(blocks / 4);
      const rows = groups * 64;
      const plain = arena.alloc(rows * 4);
      const withMax = arena.alloc(rows * 4);
      const gmax = arena.alloc(groups * 4);
      arena.kernels.lmHead(plain, xPtr, wPtr, blocks, C);
      arena.kernels.lmHeadMax(withMax, gmax, xPtr, wPtr, blocks, C);
      const a = arena.f32(plain, blocks * 16);
      const b = arena.f32(withMax, blocks * 16);
      assert.deepEqual(Array.from(b), Array.from(a), `blocks ${blocks}: logits differ`);
      for (let g = 0; g < groups; g++) {
        const want = Math.max(...a.subarray(g * 64, Math.min(blocks * 16, g * 64 + 64)));
        assert.equal(arena.f32(gmax, groups)[g], want, `blocks ${blocks} group ${g}`);
      }
      // Pad the unwritten tail with values above every cut: collectAtLeast must still stop at V.
      arena.f32(withMax, rows).fill(1e9, blocks * 16);
      const V = blocks * 16 - (blocks % 3);
      const sorted = Array.from(a.subarray(0, V)).sort((p, q) => q - p);
      for (const cut of [sorted[0], sorted[Math.floor(V / 2)], sorted[V - 1], sorted[0] + 1]) {
        const ids = arena.alloc(rows * 4);
        const vals = arena.alloc(rows * 4);
        const n = arena.kernels.collectAtLeast(withMax, gmax, groups, V, cut, ids, vals);
        const want = Array.from(a.subarray(0, V).keys()).filter((v) => a[v] >= cut);
        assert.deepEqual(Array.from(arena.i32(ids, n)), want, `blocks ${blocks} cut ${cut}: ids`);
        assert.deepEqual(
          Array.from(arena.f32(vals, n)),
          want.map((v) => a[v]),
          `blocks ${blocks} cut ${cut}: values`,
        );
        checked += n;
      }
    }
    console.log(
      `lmHeadMax: logits identical to lmHead; collectAtLeast returned ${checked} logits, all as a scan`,
    );
  });

  it('kthLargest returns the k-th largest score for every k, with many ties and without, leaving its input alone', () => {
    assert.ok(arena);
    const rng = new Rng(17);
    let cases = 0;
    for (const n of [1, 2, 3, 7, 64, 100, 786]) {
      for (const distinct of [2, 1000]) {
        const scores = Float32Array.from(
          { length: n },
          () => Math.floor(rng.random() * distinct) - distinct / 2,
        );
        const ptr = arena.alloc(n * 4);
        const work = arena.alloc(n * 4);
        arena.f32(ptr, n).set(scores);
        const sorted = Array.from(scores).sort((a, b) => b - a);
        for (let k = 1; k <= n; k += Math.max(1, Math.floor(n / 17))) {
          assert.equal(arena.kernels.kthLargest(ptr, n, k, work), sorted[k - 1], `n ${n} k ${k}`);
          cases++;
        }
        assert.deepEqual(Array.from(arena.f32(ptr, n)), Array.from(scores), 'the input was reordered');
      }
    }
    console.log(`kthLargest: ${cases} selections equal a sort`);
  });

  it('a decode step through the streaming product kernel gives the logits of the pure-JS step', () => {
    const rng = new Rng(13);
    const config = {
      vocabSize: 300,
      nPositions: 16,
      nEmbd: 48,
      nLayer: 2,
      nHead: 3,
      layerNormEpsilon: 1e-5,
      tieWordEmbeddings: true,
      bosTokenId: 0,
      eosTokenId: 0,
    };
    const params = randomArray(rng, parameterLayout(config).total, 0.3);
    const simd = new InferenceSession(new InferenceWeights(config, params));
    assert.ok(
      simd.weights.arena?.owns(simd.weights.views!.layers[0].qkvw),
      'the SIMD weights live in the arena',
    );
    setWasmKernelsEnabled(false);
    let plain: InferenceSession;
    try {
      plain = new InferenceSession(new InferenceWeights(config, params));
    } finally {
      setWasmKernelsEnabled(true);
    }
    assert.equal(plain.weights.arena, null);
    let worst = 0;
    simd.prefill([1, 2]);
    plain.prefill([1, 2]);
    for (let t = 0; t < 12; t++) {
      const id = (t * 37) % config.vocabSize;
      const a = Float32Array.from(simd.step(id));
      worst = Math.max(worst, maxAbsDiff(a, plain.step(id)));
    }
    console.log(`decode steps, kernels vs pure JS: largest logit diff ${worst.toExponential(2)}`);
    assert.ok(worst <= 1e-4, `diff ${worst}`);
  });

  it('argmax matches the JS scan, including ties, NaN and -Infinity, at every length mod 16', () => {
    assert.ok(arena);
    const rng = new Rng(5);
    const cases: Float32Array[] = [
      Float32Array.from([1, 5, 5, 2]),
      Float32Array.from([Number.NaN, 1, 2, 3, 4]),
      Float32Array.from([0, Number.NaN, 7, 7, Number.NaN, 7]),
      new Float32Array(9).fill(Number.NEGATIVE_INFINITY),
      Float32Array.from([3, 3, 3, 3, 3, 3, 3]),
    ];
    for (let n = 1; n < 72; n++) {
      // Few distinct values so ties across lanes and lane groups are common.
      cases.push(Float32Array.from({ length: n }, () => Math.floor(rng.random() * 4)));
    }
    for (const c of cases) assert.equal(arena.argmax(c), argmax(c), `scores ${Array.from(c)}`);
  });

  it('top-k sampling picks the same token as the JS heap for every k, coin and temperature', () => {
    const rng = new Rng(9);
    const V = 3001;
    // Coarse values: many ties, which must still resolve to the lower id.
    const logits = Float32Array.from({ length: V }, () => Math.round(rng.random() * 40) / 4);
    const fast = new SamplerScratch(V);
    const slow = new SamplerScratch(V);
    let compared = 0;
    for (const topK of [1, 2, 7, 50, 1000, V - 1, 0]) {
      for (const topP of [1, 0.95, 0.5]) {
        for (const temperature of [0, 0.7, 1]) {
          const params = { temperature, topK, topP, repetitionPenalty: 1 };
          for (let i = 0; i < 20; i++) {
            const coin = rng.random();
            const a = sampleToken(logits, params, coin, fast);
            const b = withoutKernels(() => sampleToken(logits, params, coin, slow));
            assert.equal(a, b, `topK ${topK} topP ${topP} T ${temperature} coin ${coin}`);
            compared++;
          }
        }
      }
    }
    console.log(`${compared} draws identical with and without the kernels`);
  });

  it('a session on the kernels gives the logits of a session on pure JS, step after step', () => {
    const rng = new Rng(11);
    const config = {
      vocabSize: 5003,
      nPositions: 32,
      nEmbd: 32,
      nLayer: 2,
      nHead: 4,
      layerNormEpsilon: 1e-5,
      tieWordEmbeddings: true,
      bosTokenId: 0,
      eosTokenId: 0,
    };
    const params = randomArray(rng, parameterLayout(config).total, 0.2);
    const fast = new InferenceSession(new InferenceWeights(config, params));
    const slowWeights = withoutKernels(() => new InferenceWeights(config, params));
    assert.equal(slowWeights.packedHead, null, 'kernels off means no packed head');
    const slow = withoutKernels(() => new InferenceSession(slowWeights));
    let worst = maxAbsDiff(fast.prefill([1, 2, 3]), slow.prefill([1, 2, 3]));
    for (let t = 0; t < 20; t++) worst = Math.max(worst, maxAbsDiff(fast.step(t * 97), slow.step(t * 97)));
    console.log(`kernel vs JS session logits over 21 calls: largest abs diff ${worst.toExponential(2)}`);
    assert.ok(worst <= 1e-5);
  });

  it('logits views handed out earlier stay valid after the memory grows', () => {
    assert.ok(arena);
    const config = {
      vocabSize: 100,
      nPositions: 8,
      nEmbd: 8,
      nLayer: 1,
      nHead: 2,
      layerNormEpsilon: 1e-5,
      tieWordEmbeddings: true,
      bosTokenId: 0,
      eosTokenId: 0,
    };
    const params = randomArray(new Rng(1), parameterLayout(config).total);
    const session = new InferenceSession(new InferenceWeights(config, params));
    const logits = session.prefill([5]);
    const before = Array.from(logits);
    const big = arena.alloc(64 * 1024 * 1024);
    arena.free(big, 64 * 1024 * 1024);
    assert.equal(logits.length, 100);
    assert.deepEqual(Array.from(logits), before);
    assert.equal(session.step(6), logits, 'the same reused buffer');
  });

  it('every matmul.ts product on the WebAssembly gemm equals its JS loop (edges of 4×8 tiles included)', () => {
    const rng = new Rng(13);
    let worst = 0;
    const compare = (a: Float32Array, b: Float32Array, what: string) => {
      // Relative to the magnitude: sums of up to K terms in float32 versus JS's double/float loops.
      const scale = b.reduce((m, v) => Math.max(m, Math.abs(v)), 1);
      const diff = maxAbsDiff(a, b) / scale;
      worst = Math.max(worst, diff);
      assert.ok(diff <= 1e-5, `${what}: relative diff ${diff}`);
    };
    for (const [N, IC, OC] of [
      [64, 48, 144],
      [37, 33, 70],
      [128, 64, 515],
      [13, 256, 31],
      [1, 300, 300], // one row; k past one 256-deep block
      [600, 1, 130], // IC = 1
      [260, 600, 1], // OC = 1
    ]) {
      const inp = randomArray(rng, N * IC);
      const w = randomArray(rng, IC * OC);
      const bias = randomArray(rng, OC);
      const dout = randomArray(rng, N * OC);
      const run = (kernels: boolean) => {
        const fn = () => {
          const out = new Float32Array(N * OC);
          matmulForward(out, inp, w, bias, N, IC, OC);
          const dinp = randomArray(new Rng(1), N * IC);
          const dw = randomArray(new Rng(2), IC * OC);
          const db = new Float32Array(OC);
          matmulBackward(dinp, dw, db, dout, inp, w, N, IC, OC);
          // The LM-head orientation: W is [OC, IC].
          const outT = new Float32Array(N * OC);
          matmulTransposedForward(outT, inp, w, N, IC, OC);
          const dinpT = randomArray(new Rng(3), N * IC);
          const dwT = randomArray(new Rng(4), OC * IC);
          matmulTransposedBackward(dinpT, dwT, dout, inp, w, N, IC, OC);
          return { out, dinp, dw, db, outT, dinpT, dwT };
        };
        return kernels ? fn() : withoutKernels(fn);
      };
      const fast = run(true);
      const slow = run(false);
      for (const key of Object.keys(fast) as (keyof typeof fast)[]) {
        compare(fast[key], slow[key], `${key} N ${N} IC ${IC} OC ${OC}`);
      }
    }
    console.log(`gemm vs JS loops: largest relative diff ${worst.toExponential(2)}`);
  });
});
