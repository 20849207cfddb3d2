// Seeded random test operands shared by the kernel and matrix-product tests.
import type { Rng } from '../../src/engine/rng.js';

/** n floats uniform in [-scale, scale) from `rng`. */
export function randomArray(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.random() * 2 - 1) * scale;
  return a;
}
