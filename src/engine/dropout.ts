// Dropout for training: seeded masks, their application, and attention whose probabilities are dropped.
import type { Rng } from './rng.js';

/** Fills mask[0..n) with 0 (dropped, probability p) or 1/(1−p) (kept), drawing from rng. */
export function dropoutMask(mask: Float32Array, n: number, p: number, rng: Rng): void {
  const keep = 1 / (1 - p);
  for (let i = 0; i < n; i++) mask[i] = rng.random() < p ? 0 : keep;
}

/** x ⊙= mask over n values (forward and backward of dropout are the same product). */
export function applyMask(x: Float32Array, mask: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) x[i] *= mask[i];
}

/** out = src ⊙ mask over n values. */
export function maskedCopy(out: Float32Array, src: Float32Array, mask: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = src[i] * mask[i];
}

/**
 * Recomputes attention outputs with dropped probabilities: out[b,t,h] = Σ_t2 (att ⊙ mask)[t,t2] · v[t2].
 * att and mask are [B,NH,T,T]; inp is the [B,T,3C] q,k,v buffer the probabilities came from.
 */
export function attentionValuesDropout(
  out: Float32Array,
  att: Float32Array,
  mask: Float32Array,
  inp: Float32Array,
  B: number,
  T: number,
  C: number,
  NH: number,
): void {
  const C3 = 3 * C;
  const hs = C / NH;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const row = ((b * NH + h) * T + t) * T;
        const o = (b * T + t) * C + h * hs;
        for (let i = 0; i < hs; i++) out[o + i] = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          const a = att[row + t2] * mask[row + t2];
          if (a === 0) continue;
          const v = (b * T + t2) * C3 + h * hs + 2 * C;
          for (let i = 0; i < hs; i++) out[o + i] += a * inp[v + i];
        }
      }
    }
  }
}

/**
 * Backward of attention with dropped probabilities; accumulates dinp[B,T,3C]. att holds the softmax
 * before dropout (the softmax backward needs it), mask the dropout scale; dpreatt/datt are scratch.
 */
export function attentionBackwardDropout(
  dinp: Float32Array,
  dpreatt: Float32Array,
  datt: Float32Array,
  dout: Float32Array,
  inp: Float32Array,
  att: Float32Array,
  mask: Float32Array,
  B: number,
  T: number,
  C: number,
  NH: number,
): void {
  const C3 = 3 * C;
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const row = ((b * NH + h) * T + t) * T;
        const d = (b * T + t) * C + h * hs;
        // out = Σ (att ⊙ mask)·v: gradient to v uses the dropped weights, to att goes through the mask.
        for (let t2 = 0; t2 <= t; t2++) {
          const v = (b * T + t2) * C3 + h * hs + 2 * C;
          const m = mask[row + t2];
          const a = att[row + t2] * m;
          let s = 0;
          for (let i = 0; i < hs; i++) {
            s += inp[v + i] * dout[d + i];
            dinp[v + i] += a * dout[d + i];
          }
          datt[row + t2] = s * m;
        }
        let dot = 0;
        for (let t2 = 0; t2 <= t; t2++) dot += att[row + t2] * datt[row + t2];
        for (let t2 = 0; t2 <= t; t2++) dpreatt[row + t2] = att[row + t2] * (datt[row + t2] - dot);
        const q = (b * T + t) * C3 + h * hs;
        for (let t2 = 0; t2 <= t; t2++) {
          const k = (b * T + t2) * C3 + h * hs + C;
          const g = dpreatt[row + t2] * scale;
          for (let i = 0; i < hs; i++) {
            dinp[q + i] += inp[k + i] * g;
            dinp[k + i] += inp[q + i] * g;
          }
        }
      }
    }
  }
}
