// Finite-difference checks of every backward op: analytic gradients vs central differences, in float64 math
// on tiny shapes (the kernels' plain loops run on Float64Arrays just as on Float32Arrays).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  matmulBackward,
  matmulForward,
  matmulTransposedBackward,
  matmulTransposedForward,
} from '../../src/engine/matmul.js';
import {
  attentionBackward,
  attentionForward,
  crossEntropyForward,
  encoderBackward,
  encoderForward,
  geluBackward,
  geluForward,
  layernormBackward,
  layernormForward,
} from '../../src/engine/ops.js';
import { Rng } from '../../src/engine/rng.js';

type Vec = Float32Array; // really Float64Array: the ops are typed for float32 but compute in whatever they get

const rng = new Rng(42);
function vec(n: number, scale = 1): Vec {
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal() * scale;
  return v as unknown as Vec;
}
const zeros = (n: number) => new Float64Array(n) as unknown as Vec;

/**
 * Checks d(Σ R ⊙ f(x))/dx for each input x against central differences. `forward` returns the scalar loss
 * for the current inputs; `analytic` fills and returns the gradients (same order as `inputs`).
 */
function check(name: string, inputs: Vec[], forward: () => number, analytic: () => Vec[]) {
  const grads = analytic();
  const h = 1e-6;
  let worst = 0;
  inputs.forEach((x, k) => {
    for (let i = 0; i < x.length; i++) {
      const keep = x[i];
      x[i] = keep + h;
      const up = forward();
      x[i] = keep - h;
      const down = forward();
      x[i] = keep;
      const numeric = (up - down) / (2 * h);
      const err = Math.abs(numeric - grads[k][i]) / Math.max(1, Math.abs(numeric));
      worst = Math.max(worst, err);
    }
  });
  console.log(`${name}: largest gradient error ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-6, `${name}: gradient error ${worst}`);
}

const dot = (a: Vec, b: Vec) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

describe('finite-difference gradient checks (float64)', () => {
  it('layernorm: input, weight, bias', () => {
    const N = 3;
    const C = 5;
    const x = vec(N * C);
    const w = vec(C);
    const b = vec(C);
    const R = vec(N * C);
    const out = zeros(N * C);
    const mean = zeros(N);
    const rstd = zeros(N);
    const fwd = () => {
      layernormForward(out, mean, rstd, x, w, b, N, C, 1e-5);
      return dot(out, R);
    };
    check('layernorm', [x, w, b], fwd, () => {
      fwd();
      const dx = zeros(N * C);
      const dw = zeros(C);
      const db = zeros(C);
      layernormBackward(dx, dw, db, R, x, w, mean, rstd, N, C);
      return [dx, dw, db];
    });
  });

  it('causal multi-head attention: q, k, v', () => {
    const B = 2;
    const T = 4;
    const C = 6;
    const NH = 2;
    const qkv = vec(B * T * 3 * C);
    const R = vec(B * T * C);
    const out = zeros(B * T * C);
    const pre = zeros(B * NH * T * T);
    const att = zeros(B * NH * T * T);
    const fwd = () => {
      attentionForward(out, pre, att, qkv, B, T, C, NH);
      return dot(out, R);
    };
    check('attention', [qkv], fwd, () => {
      fwd();
      const d = zeros(B * T * 3 * C);
      attentionBackward(d, zeros(B * NH * T * T), zeros(B * NH * T * T), R, qkv, att, B, T, C, NH);
      return [d];
    });
  });

  it('attention with dropped probabilities (fixed mask)', () => {
    const B = 1;
    const T = 5;
    const C = 4;
    const NH = 2;
    const qkv = vec(B * T * 3 * C);
    const R = vec(B * T * C);
    const mask = zeros(B * NH * T * T);
    for (let i = 0; i < mask.length; i++) mask[i] = rng.random() < 0.3 ? 0 : 1 / 0.7;
    const out = zeros(B * T * C);
    const pre = zeros(B * NH * T * T);
    const att = zeros(B * NH * T * T);
    const fwd = () => {
      attentionForward(out, pre, att, qkv, B, T, C, NH, mask);
      return dot(out, R);
    };
    // The forward pass with a mask is Σ_t2 (att ⊙ mask)[t,t2] · v[t2], att staying the undropped softmax.
    fwd();
    const hs = C / NH;
    let worst = 0;
    for (let h = 0; h < NH; h++)
      for (let t = 0; t < T; t++)
        for (let i = 0; i < hs; i++) {
          let want = 0;
          for (let t2 = 0; t2 <= t; t2++) {
            const row = (h * T + t) * T + t2;
            want += att[row] * mask[row] * qkv[t2 * 3 * C + 2 * C + h * hs + i];
          }
          worst = Math.max(worst, Math.abs(out[t * C + h * hs + i] - want));
        }
    console.log(`masked attention forward vs direct sum: max |diff| ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-6, `masked attention forward differs by ${worst}`);
    check('attention+dropout', [qkv], fwd, () => {
      fwd();
      const d = zeros(B * T * 3 * C);
      const s = B * NH * T * T;
      attentionBackward(d, zeros(s), zeros(s), R, qkv, att, B, T, C, NH, mask);
      return [d];
    });
  });

  it('gelu (tanh approximation)', () => {
    const N = 12;
    const x = vec(N, 2);
    const R = vec(N);
    const out = zeros(N);
    const fwd = () => {
      geluForward(out, x, N);
      return dot(out, R);
    };
    check('gelu', [x], fwd, () => {
      const d = zeros(N);
      geluBackward(d, x, R, N);
      return [d];
    });
  });

  it('matmul, Conv1D orientation W[in, out]: input, weight, bias', () => {
    const N = 3;
    const IC = 4;
    const OC = 5;
    const x = vec(N * IC);
    const w = vec(IC * OC);
    const b = vec(OC);
    const R = vec(N * OC);
    const out = zeros(N * OC);
    const fwd = () => {
      matmulForward(out, x, w, b, N, IC, OC);
      return dot(out, R);
    };
    check('matmul', [x, w, b], fwd, () => {
      const dx = zeros(N * IC);
      const dw = zeros(IC * OC);
      const db = zeros(OC);
      matmulBackward(dx, dw, db, R, x, w, N, IC, OC);
      return [dx, dw, db];
    });
  });

  it('matmul, LM-head orientation W[out, in]: input, weight', () => {
    const N = 5;
    const IC = 3;
    const OC = 7;
    const x = vec(N * IC);
    const w = vec(OC * IC);
    const R = vec(N * OC);
    const out = zeros(N * OC);
    const fwd = () => {
      matmulTransposedForward(out, x, w, N, IC, OC);
      return dot(out, R);
    };
    check('matmul transposed', [x, w], fwd, () => {
      const dx = zeros(N * IC);
      const dw = zeros(OC * IC);
      matmulTransposedBackward(dx, dw, R, x, w, N, IC, OC);
      return [dx, dw];
    });
  });

  it('token + position encoder (a repeated token accumulates)', () => {
    const B = 2;
    const T = 3;
    const C = 4;
    const V = 5;
    const inp = Int32Array.from([1, 3, 1, 4, 1, 0]);
    const wte = vec(V * C);
    const wpe = vec(T * C);
    const R = vec(B * T * C);
    const out = zeros(B * T * C);
    const fwd = () => {
      encoderForward(out, inp, wte, wpe, B, T, C);
      return dot(out, R);
    };
    check('encoder', [wte, wpe], fwd, () => {
      const dwte = zeros(V * C);
      const dwpe = zeros(T * C);
      encoderBackward(dwte, dwpe, R, inp, B, T, C);
      return [dwte, dwpe];
    });
  });

  it('cross-entropy: mean over counted targets, ignored (−1) rows get no gradient', () => {
    const N = 4;
    const V = 6;
    const logits = vec(N * V, 2);
    const targets = Int32Array.from([2, -1, 5, 0]);
    const losses = zeros(N);
    const fwd = () => crossEntropyForward(losses, logits, targets, N, V);
    check('cross-entropy', [logits], fwd, () => {
      const d = zeros(N * V);
      crossEntropyForward(losses, logits, targets, N, V, d, 1 / 3);
      for (let v = 0; v < V; v++) assert.equal(d[V + v], 0);
      return [d];
    });
  });
});
