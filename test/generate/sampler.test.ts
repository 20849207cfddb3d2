// Proves each sampling knob has its observable effect: greedy, temperature, top-k, top-p, repetition penalty.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../../src/engine/rng.js';
import { applyRepetitionPenalty, argmax, SamplerScratch, sampleToken } from '../../src/generate/sampler.js';
import {
  MIN_REPETITION_PENALTY,
  MIN_TEMPERATURE,
  sanitizeSampling,
} from '../../src/generate/sampling-limits.js';

const logits = Float32Array.from([2.0, 1.0, 0.5, 3.0, -1.0, 0.0, 2.5, -2.0]);
const base = { temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 };

function histogram(params: typeof base, draws: number, seed = 1, seen: number[] = []): number[] {
  const rng = new Rng(seed);
  const scratch = new SamplerScratch(logits.length);
  const counts = new Array(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampleToken(logits, params, rng.random(), scratch, seen)]++;
  return counts;
}

function softmax(xs: ArrayLike<number>, t = 1): number[] {
  const max = Math.max(...Array.from(xs));
  const e = Array.from(xs, (x) => Math.exp((x - max) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

describe('sampler', () => {
  it('temperature 0 is argmax whatever the coin', () => {
    const scratch = new SamplerScratch(logits.length);
    for (const coin of [0, 0.3, 0.999]) {
      assert.equal(sampleToken(logits, { ...base, temperature: 0 }, coin, scratch), 3);
    }
    assert.equal(argmax(Float32Array.from([1, 5, 5, 2])), 1, 'ties go to the lowest index like torch.argmax');
  });

  it('draws follow softmax(logits / T): frequencies match within 1.5 percentage points', () => {
    for (const temperature of [1, 0.5, 2]) {
      const n = 40000;
      const counts = histogram({ ...base, temperature }, n);
      const expected = softmax(logits, temperature);
      const worst = Math.max(...counts.map((c, i) => Math.abs(c / n - expected[i])));
      console.log(`temperature ${temperature}: largest frequency error ${worst.toFixed(4)}`);
      assert.ok(worst < 0.015, `frequency error ${worst}`);
    }
  });

  it('lower temperature concentrates mass on the best token', () => {
    const cold = histogram({ ...base, temperature: 0.3 }, 5000)[3];
    const hot = histogram({ ...base, temperature: 3 }, 5000)[3];
    assert.ok(cold > hot + 1000, `cold ${cold} vs hot ${hot}`);
  });

  it('top-k never samples outside the k best and renormalises among them', () => {
    const counts = histogram({ ...base, topK: 3 }, 20000);
    const allowed = new Set([3, 6, 0]);
    counts.forEach((c, i) => {
      if (!allowed.has(i)) assert.equal(c, 0, `token ${i} sampled ${c} times outside top-3`);
    });
    const expected = softmax([2.0, 3.0, 2.5]);
    const freq = [counts[0], counts[3], counts[6]].map((c) => c / 20000);
    const worst = Math.max(...freq.map((f, i) => Math.abs(f - expected[i])));
    console.log(`top-k renormalisation: largest frequency error ${worst.toFixed(4)}`);
    assert.ok(worst < 0.015);
  });

  it('top-p keeps the smallest prefix whose mass reaches p', () => {
    const probs = softmax(logits);
    const order = probs.map((p, i) => [p, i] as const).sort((a, b) => b[0] - a[0]);
    // With p just above the best token's mass, exactly the two best tokens stay.
    const p = order[0][0] + 0.01;
    const counts = histogram({ ...base, topP: p }, 20000);
    const kept = counts.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0);
    assert.deepEqual(kept.sort(), [order[0][1], order[1][1]].sort());
    // With p below the best token's mass only the best token stays.
    const only = histogram({ ...base, topP: order[0][0] * 0.5 }, 2000);
    assert.equal(only[order[0][1]], 2000);
  });

  it('top-k and top-p compose like Hugging Face (top-k first, then nucleus on the renormalised top-k)', () => {
    const counts = histogram({ ...base, topK: 2, topP: 0.99 }, 5000);
    assert.deepEqual(
      counts.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0),
      [3, 6],
    );
  });

  it('repetition penalty follows the HF formula and lowers the chance of seen tokens', () => {
    const x = Float32Array.from([2, -2, 1]);
    applyRepetitionPenalty(x, [0, 1, 1], 2);
    assert.deepEqual(Array.from(x), [1, -4, 1]);
    const without = histogram(base, 20000, 3)[3];
    const withPenalty = histogram({ ...base, repetitionPenalty: 1.8 }, 20000, 3, [3])[3];
    assert.ok(withPenalty < without * 0.7, `penalised ${withPenalty} vs free ${without}`);
  });

  it('the same coins give the same tokens; different seeds give different sequences', () => {
    const a = histogram(base, 1, 42);
    const b = histogram(base, 1, 42);
    assert.deepEqual(a, b);
    const seq = (seed: number) => {
      const rng = new Rng(seed);
      const scratch = new SamplerScratch(logits.length);
      return Array.from({ length: 30 }, () => sampleToken(logits, base, rng.random(), scratch));
    };
    assert.deepEqual(seq(7), seq(7));
    assert.notDeepEqual(seq(7), seq(8));
  });

  it('top-k on a 50 257-wide vector selects exactly the k largest', () => {
    const rng = new Rng(5);
    const big = Float32Array.from({ length: 50257 }, () => rng.normal());
    const scratch = new SamplerScratch(big.length);
    const top = Array.from(big)
      .map((v, i) => [v, i] as const)
      .sort((a, b) => b[0] - a[0])
      .slice(0, 50)
      .map(([, i]) => i);
    const seen = new Set<number>();
    for (let i = 0; i < 3000; i++) seen.add(sampleToken(big, { ...base, topK: 50 }, rng.random(), scratch));
    for (const id of seen) assert.ok(top.includes(id), `sampled ${id} outside the top 50`);
    assert.ok(seen.size > 30, `only ${seen.size} distinct tokens seen`);
  });

  it('float extremes: a temperature whose reciprocal overflows samples greedily, never through NaN', () => {
    // 5e-324: 1/T is Infinity, and (x - max)·Infinity is NaN for the best token.
    for (const temperature of [5e-324, 1e-310, Number.MIN_VALUE * 4]) {
      const counts = histogram({ ...base, temperature }, 200, 9);
      assert.equal(counts[3], 200, `temperature ${temperature}: ${counts}`);
    }
  });

  it('float extremes: an infinite logit (a penalty near 0 divided by) wins outright, whatever the coin', () => {
    const scratch = new SamplerScratch(4);
    const x = Float32Array.from([1, Number.POSITIVE_INFINITY, 2, Number.NEGATIVE_INFINITY]);
    for (const coin of [0, 0.5, 0.999]) assert.equal(sampleToken(x, base, coin, scratch), 1);
    // The penalty of 1e-320 itself: the positive seen logit divided by it overflows.
    const seen = [0];
    for (const coin of [0, 0.5, 0.999])
      assert.equal(sampleToken(logits, { ...base, repetitionPenalty: 1e-320 }, coin, scratch, seen), 0);
  });

  it('at the edge: tiny temperatures become 0 (greedy) and tiny repetition penalties the stated minimum', () => {
    assert.equal(sanitizeSampling({ ...base, temperature: MIN_TEMPERATURE / 2 }).temperature, 0);
    assert.equal(sanitizeSampling({ ...base, temperature: MIN_TEMPERATURE }).temperature, MIN_TEMPERATURE);
    assert.equal(
      sanitizeSampling({ ...base, repetitionPenalty: 1e-300 }).repetitionPenalty,
      MIN_REPETITION_PENALTY,
    );
    assert.equal(sanitizeSampling({ ...base, repetitionPenalty: 1.3 }).repetitionPenalty, 1.3);
  });
});
