// Dropout for training: seeded masks and their application (attention applies its own mask: ops.ts).
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
