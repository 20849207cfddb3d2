// Top-k from the head's group maxima (the full head) and from the int8 screen: LmHead.top returns exactly the ids
// and values a top-k over all V logits returns (ties to the lower id), and generation draws the same tokens.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GPTConfig } from '../../src/engine/config.js';
import { InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { wasmArena } from '../../src/engine/wasm/runtime.js';
import { type GenerateOptions, generateAll } from '../../src/generate/generate.js';
import { SamplerScratch, sampleToken } from '../../src/generate/sampler.js';

function randomModel(V: number, C: number, seed: number): { config: GPTConfig; params: Float32Array } {
  const config: GPTConfig = {
    vocabSize: V,
    nPositions: 64,
    nEmbd: C,
    nLayer: 1,
    nHead: C % 2 === 0 ? 2 : 1,
    layerNormEpsilon: 1e-5,
    tieWordEmbeddings: true,
    bosTokenId: 0,
    eosTokenId: 0,
  };
  const rng = new Rng(seed);
  const params = new Float32Array(parameterLayout(config).total);
  for (let i = 0; i < params.length; i++) params[i] = (rng.random() * 2 - 1) * 0.3;
  return { config, params };
}

/** Where the LM-head rows live: the token embedding, and lm_head.weight when the layout keeps one. */
function headTensors(config: GPTConfig): { offset: number }[] {
  const layout = parameterLayout(config);
  const heads = ['transformer.wte.weight', 'lm_head.weight'].flatMap((name) => layout.byName.get(name) ?? []);
  assert.ok(heads.length > 0, 'layout has the token embedding');
  // A tied head may be listed under both names at one offset: each row must be touched once.
  return heads.filter((t, i) => heads.findIndex((u) => u.offset === t.offset) === i);
}

/** Overwrites the head rows in [from, to) with `row`. */
function setRows(config: GPTConfig, params: Float32Array, from: number, to: number, row: number[]): void {
  const C = config.nEmbd;
  for (const t of headTensors(config))
    for (let v = from; v < to; v++) for (let c = 0; c < C; c++) params[t.offset + v * C + c] = row[c];
}

/** The k largest logits by a scan of all of them (value descending, ties to the lower id). */
function scanTop(logits: Float32Array, k: number): { ids: number[]; values: number[] } {
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  const ids = order.slice(0, k);
  return { ids, values: ids.map((i) => logits[i]) };
}

const available = wasmArena() !== null;

describe('top-k from group maxima', { skip: available ? false : 'needs the WebAssembly kernels' }, () => {
  it('gives the ids and values of a full scan for every k up to the group count, at every position', () => {
    let compared = 0;
    let candidates = 0;
    let steps = 0;
    for (const [V, C] of [
      [3001, 16],
      [1024, 8],
      [130, 12],
    ]) {
      const { config, params } = randomModel(V, C, V);
      const session = new InferenceSession(new InferenceWeights(config, params, { lmHead: 'full' }));
      const head = session.lmHead;
      const groups = Math.ceil(Math.ceil(V / 16) / 4);
      assert.equal(head.topLimit, groups);
      const ids = new Int32Array(groups);
      const values = new Float64Array(groups);
      const ks = [...new Set([1, 2, 5, 40, groups].filter((k) => k <= groups))];
      let logits = session.prefill([1, 2, 3]);
      for (let step = 0; step < 12; step++) {
        for (const k of ks) {
          assert.ok(head.top(0, k, ids, values), `V ${V} k ${k}: top declined`);
          const want = scanTop(logits, k);
          assert.deepEqual(Array.from(ids.subarray(0, k)), want.ids, `V ${V} step ${step} k ${k}: ids`);
          assert.deepEqual(
            Array.from(values.subarray(0, k)),
            want.values,
            `V ${V} step ${step} k ${k}: values`,
          );
          compared += k;
          if (k === 40) {
            candidates += head.lastCandidates;
            steps++;
          }
        }
        assert.equal(head.top(0, groups + 1, ids, values), false, 'k above the group count is declined');
        assert.equal(head.top(0, 0, ids, values), false, 'k = 0 is declined');
        logits = session.step((step * 37) % V);
      }
    }
    console.log(
      `${compared} top logits equal a full scan; ${(candidates / steps).toFixed(1)} logits compared for k = 40`,
    );
  });

  it('keeps ties in id order when whole groups hold the same logit, and the padding rows never count', () => {
    // Every row equal: each logit ties, so the top k are ids 0…k-1. V = 3001 leaves 63 padding rows whose
    // logit is 0 in the last group: with every real logit negative, they would win if they were counted.
    const { config, params } = randomModel(3001, 16, 7);
    const row = Array.from({ length: 16 }, (_, c) => (c % 2 === 0 ? 0.25 : -0.1));
    setRows(config, params, 0, 3001, row);
    const session = new InferenceSession(new InferenceWeights(config, params));
    const ids = new Int32Array(47);
    const values = new Float64Array(47);
    const logits = session.prefill([5]);
    assert.ok(session.lmHead.top(0, 47, ids, values));
    assert.deepEqual(Array.from(ids), scanTop(logits, 47).ids);
    // Now make every real logit negative: the last group's maximum must come from ids < 3001, not the padding.
    const { config: c2, params: p2 } = randomModel(3001, 16, 8);
    const s2 = new InferenceSession(new InferenceWeights(c2, p2));
    // A one-token prompt whose own logit is negative, so its (tied) embedding row can stay as it is.
    let prompt = 0;
    while (s2.prefill([prompt])[prompt] >= 0) {
      s2.reset();
      prompt++;
    }
    s2.reset();
    const l2 = Float32Array.from(s2.prefill([prompt]));
    // Negating a row negates its logit and leaves the layers alone (they read only the prompt's row).
    for (const t of headTensors(c2))
      for (let v = 0; v < 3001; v++)
        if (l2[v] > 0) for (let c = 0; c < 16; c++) p2[t.offset + v * 16 + c] *= -1;
    const s3 = new InferenceSession(new InferenceWeights(c2, p2));
    const l3 = s3.prefill([prompt]);
    let positives = 0;
    for (let v = 0; v < 3001; v++) if (l3[v] > 0) positives++;
    assert.equal(positives, 0, 'every real logit is now ≤ 0');
    // Greedy (k = 1) would find no logit ≥ the padding's 0 and fall back to a full scan if it were counted.
    assert.ok(s3.lmHead.top(0, 1, ids, values), 'greedy declined: the padding rows set the cut');
    assert.deepEqual([ids[0], values[0]], [scanTop(l3, 1).ids[0], scanTop(l3, 1).values[0]]);
    assert.ok(s3.lmHead.top(0, 47, ids, values));
    const want = scanTop(l3, 47);
    assert.deepEqual(Array.from(ids), want.ids);
    assert.ok(
      Array.from(ids).every((id) => id < 3001),
      'a padding row was returned',
    );
  });

  it('declines non-finite weights and a step without a full head', () => {
    const { config, params } = randomModel(1024, 8, 3);
    const bad = Float32Array.from(params);
    for (const t of headTensors(config)) bad[t.offset + 500 * 8 + 3] = Number.NaN;
    const ids = new Int32Array(16);
    const values = new Float64Array(16);
    const s = new InferenceSession(new InferenceWeights(config, bad));
    s.prefill([1]);
    assert.equal(
      s.lmHead.top(0, 5, ids, values),
      false,
      'a NaN head weight must send sampling to the full scan',
    );
    const good = new InferenceSession(new InferenceWeights(config, params));
    assert.equal(good.lmHead.top(0, 5, ids, values), false, 'nothing run yet');
    good.prefill([1]);
    assert.ok(good.lmHead.top(0, 5, ids, values));
  });

  it('generation draws the tokens a full scan draws (sampled and greedy, seeded), screened or not', () => {
    for (const V of [3001, 5003]) generationMatches(V);
  });
});

describe('int8 screening head', { skip: available ? false : 'needs the WebAssembly kernels' }, () => {
  it('gives the ids and values of a full scan for every k up to the group count (n_embd 16, 12 and odd 15)', () => {
    let compared = 0;
    let candidates = 0;
    let steps = 0;
    for (const [V, C] of [
      [5003, 16],
      [4096, 12],
      [4500, 15],
    ]) {
      const { config, params } = randomModel(V, C, V + C);
      const weights = new InferenceWeights(config, params);
      assert.ok(weights.screenRows, `V ${V}: no screening head`);
      const screened = new InferenceSession(weights);
      const full = new InferenceSession(new InferenceWeights(config, params, { lmHead: 'full' }));
      const groups = Math.ceil(V / 64);
      assert.equal(screened.lmHead.name, 'int8-screen');
      assert.equal(screened.lmHead.topLimit, groups);
      const ids = new Int32Array(groups);
      const values = new Float64Array(groups);
      const want = new Int32Array(groups);
      const wantValues = new Float64Array(groups);
      screened.prefill([1, 2, 3]);
      full.prefill([1, 2, 3]);
      for (let step = 0; step < 15; step++) {
        for (const k of [1, 3, 50, groups]) {
          assert.ok(screened.lmHead.top(0, k, ids, values), `V ${V} k ${k}: no answer`);
          assert.equal(screened.lmHead.lastSource, 'int8-screen', `V ${V} k ${k}: screening declined`);
          assert.ok(full.lmHead.top(0, k, want, wantValues));
          assert.deepEqual(
            Array.from(ids.subarray(0, k)),
            Array.from(want.subarray(0, k)),
            `V ${V} k ${k} ids`,
          );
          assert.deepEqual(
            Array.from(values.subarray(0, k)),
            Array.from(wantValues.subarray(0, k)),
            `V ${V} k ${k}`,
          );
          compared += k;
          if (k === 50) {
            candidates += screened.lmHead.lastCandidates;
            steps++;
          }
        }
        assert.equal(screened.lmHead.top(0, groups + 1, ids, values), false, 'k above the group count');
        const next = (step * 101) % V;
        screened.step(next);
        full.step(next);
      }
    }
    console.log(
      `${compared} screened top logits equal a full scan; ${(candidates / steps).toFixed(1)} rows in f32 for k = 50`,
    );
  });

  it('stays exact when thousands of logits lie within the int8 error of each other', () => {
    // Every row is one shared row plus a perturbation far below an int8 step: the scores cannot separate
    // them, so the cut keeps nearly all rows, and the f32 logits must still decide (ties to the lower id).
    const V = 4096;
    const C = 16;
    const { config, params } = randomModel(V, C, 21);
    const rng = new Rng(4);
    const base = Array.from({ length: C }, () => rng.random() - 0.5);
    for (const t of headTensors(config))
      for (let v = 0; v < V; v++)
        for (let c = 0; c < C; c++)
          params[t.offset + v * C + c] = base[c] + (v % 7 === 0 ? 0 : 1e-5 * (rng.random() - 0.5));
    const screened = new InferenceSession(new InferenceWeights(config, params));
    const full = new InferenceSession(new InferenceWeights(config, params, { lmHead: 'full' }));
    const ids = new Int32Array(64);
    const values = new Float64Array(64);
    const want = new Int32Array(64);
    const wantValues = new Float64Array(64);
    screened.prefill([7]);
    full.prefill([7]);
    for (const k of [1, 10, 64]) {
      assert.ok(screened.lmHead.top(0, k, ids, values));
      assert.equal(screened.lmHead.lastSource, 'int8-screen');
      assert.ok(full.lmHead.top(0, k, want, wantValues));
      assert.deepEqual(Array.from(ids.subarray(0, k)), Array.from(want.subarray(0, k)), `k ${k}`);
      assert.deepEqual(Array.from(values.subarray(0, k)), Array.from(wantValues.subarray(0, k)), `k ${k}`);
    }
    console.log(`near-ties: ${screened.lmHead.lastCandidates} of ${V} rows computed in f32, same top 64`);
    assert.ok(screened.lmHead.lastCandidates > 1000, 'the cut should have kept the indistinguishable rows');
  });

  it('is shared with workers (adopted, not quantised again), and declined for non-finite weights', () => {
    const { config, params } = randomModel(4096, 16, 31);
    const owner = new InferenceWeights(config, params, { head: 'share' });
    const shared = owner.sharedHead;
    assert.ok(shared?.screen, 'the shared head carries the screening head');
    const adopted = new InferenceWeights(config, params, { head: shared });
    assert.equal(adopted.screenRows, shared.screen);
    const a = new InferenceSession(owner);
    const b = new InferenceSession(adopted);
    const ia = new Int32Array(8);
    const va = new Float64Array(8);
    const ib = new Int32Array(8);
    const vb = new Float64Array(8);
    a.prefill([3, 4]);
    b.prefill([3, 4]);
    assert.ok(a.lmHead.top(0, 8, ia, va) && b.lmHead.top(0, 8, ib, vb));
    assert.equal(b.lmHead.lastSource, 'int8-screen');
    assert.deepEqual(Array.from(ib), Array.from(ia));
    assert.deepEqual(Array.from(vb), Array.from(va));
    const bad = Float32Array.from(params);
    for (const t of headTensors(config)) bad[t.offset + 1000 * 16 + 5] = Number.POSITIVE_INFINITY;
    const s = new InferenceSession(new InferenceWeights(config, bad));
    s.prefill([3]);
    assert.equal(
      s.lmHead.top(0, 5, ia, va),
      false,
      'an infinite head weight must send sampling to a full scan',
    );
  });
});

function generationMatches(V: number): void {
  {
    const { config, params } = randomModel(V, 16, 11);
    const session = new InferenceSession(new InferenceWeights(config, params));
    const reference = new InferenceSession(new InferenceWeights(config, params));
    const scratch = new SamplerScratch(config.vocabSize);
    for (const sampling of [
      { temperature: 1, topK: 40, topP: 0.95 },
      { temperature: 0.7, topK: 5, topP: 1 },
      { temperature: 0, topK: 0, topP: 1 },
    ]) {
      const options: GenerateOptions = {
        ...sampling,
        repetitionPenalty: 1,
        maxNewTokens: 40,
        eosTokenId: null,
        seed: 5,
      };
      const got = generateAll(session, null, [1, 2, 3], options).ids;
      // The same loop by hand: full logits and sampleToken's scan, the coins from the same seeded RNG.
      const rng = new Rng(5);
      const want: number[] = [];
      reference.reset();
      let logits = reference.prefill([1, 2, 3]);
      for (let i = 0; i < 40; i++) {
        const id = sampleToken(logits, options, rng.random(), scratch);
        want.push(id);
        if (i < 39) logits = reference.step(id);
      }
      assert.deepEqual(got, want, `V ${V} temperature ${sampling.temperature} top-k ${sampling.topK}`);
    }
  }
}
