// AdamW pieces beyond the golden runs: the update formula on one element, the decay mask, gradient clipping
// and the warmup + cosine schedule.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdamW, clipGradNorm, cosineSchedule } from '../../src/engine/adamw.js';

describe('AdamW', () => {
  it('first step moves each parameter by lr·sign(g) (bias-corrected), after decoupled decay', () => {
    const opt = new AdamW(2, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.5 });
    const p = Float32Array.from([1, 1]);
    opt.step(p, Float32Array.from([0.3, -2]));
    const decayed = 1 * (1 - 0.1 * 0.5);
    console.log(`after one step: ${Array.from(p)}`);
    assert.ok(Math.abs(p[0] - (decayed - 0.1)) < 1e-6);
    assert.ok(Math.abs(p[1] - (decayed + 0.1)) < 1e-6);
  });

  it('the decay mask exempts parameters from weight decay only', () => {
    const opt = new AdamW(2, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.5 });
    const p = Float32Array.from([1, 1]);
    opt.step(p, Float32Array.from([0, 0]), 0.1, Uint8Array.from([1, 0]));
    assert.ok(Math.abs(p[0] - 0.95) < 1e-7);
    assert.equal(p[1], 1);
  });
});

describe('clipGradNorm', () => {
  it('scales to the max norm when above it, returns the norm before, leaves small gradients alone', () => {
    const g = Float32Array.from([3, 4]);
    assert.equal(clipGradNorm(g, 1), 5);
    assert.ok(Math.abs(Math.hypot(g[0], g[1]) - 1) < 1e-6);
    const small = Float32Array.from([0.3, 0.4]);
    clipGradNorm(small, 1);
    assert.deepEqual(Array.from(small), [Math.fround(0.3), Math.fround(0.4)]);
  });
});

describe('cosineSchedule', () => {
  it('linear warmup to lr, cosine down to minLr at the last step', () => {
    const lr = (s: number) => cosineSchedule(s, 1, 10, 110, 0.1);
    assert.equal(lr(0), 0.1);
    assert.equal(lr(9), 1);
    assert.equal(lr(10), 1);
    assert.ok(Math.abs(lr(60) - 0.55) < 1e-12);
    assert.ok(lr(109) > 0.1 && lr(109) < 0.101);
    assert.equal(lr(110), 0.1);
    for (let s = 11; s < 110; s++) assert.ok(lr(s) <= lr(s - 1));
  });
});
