// The softmax exponential and the GELU's tanh built on it: accuracy against Math.exp / Math.tanh.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expNeg, tanhFast } from '../../src/engine/ops.js';

describe('expNeg and tanhFast', () => {
  it('expNeg matches Math.exp to 1e-10 relative on [−40, 0] and 1e-8 down to −87; 0 below, NaN stays NaN', () => {
    let near = 0;
    let far = 0;
    for (let i = 0; i <= 200000; i++) {
      const x = (-87.5 * i) / 200000;
      const rel = Math.abs(expNeg(x) - Math.exp(x)) / Math.exp(x);
      if (x >= -40) near = Math.max(near, rel);
      else far = Math.max(far, rel);
    }
    console.log(`expNeg: largest relative error ${near} on [−40, 0], ${far} on [−87.5, −40)`);
    assert.ok(near <= 1e-10, `relative error ${near}`);
    assert.ok(far <= 1e-8, `relative error ${far}`);
    assert.equal(expNeg(0), 1);
    assert.equal(expNeg(-88), 0);
    assert.equal(expNeg(Number.NEGATIVE_INFINITY), 0);
    assert.ok(Number.isNaN(expNeg(Number.NaN)));
  });

  it('tanhFast matches Math.tanh to 1e-10 absolute and is odd', () => {
    let worst = 0;
    for (let i = -100000; i <= 100000; i++) {
      const u = i / 5000;
      worst = Math.max(worst, Math.abs(tanhFast(u) - Math.tanh(u)));
      assert.ok(tanhFast(-u) === -tanhFast(u), `tanhFast(${-u}) is not −tanhFast(${u})`);
    }
    console.log(`tanhFast: largest absolute error ${worst} on [−20, 20]`);
    assert.ok(worst <= 1e-10, `absolute error ${worst}`);
    assert.equal(tanhFast(1000), 1);
  });
});
