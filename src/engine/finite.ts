// Finds the first NaN or ±Infinity in float32 data: a SIMD kernel over data in the kernels' memory, a branch-free bit test elsewhere.
import { wasmArena } from './wasm/runtime.js';

/** Floats per kernel call: short calls let V8 switch to the kernel's optimised code after the first few. */
const KERNEL_CHUNK = 1 << 20;

/** Index of the first NaN or ±Infinity in `data`, or -1. Runs over every weight at each server start. */
export function firstNonFinite(data: Float32Array): number {
  const arena = wasmArena();
  if (arena?.owns(data)) {
    for (let i = 0; i < data.length; i += KERNEL_CHUNK) {
      const bad = arena.kernels.firstNonFinite(
        data.byteOffset + i * 4,
        Math.min(KERNEL_CHUNK, data.length - i),
      );
      if (bad >= 0) return i + bad;
    }
    return -1;
  }
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const n = bits.length;
  let flags = 0;
  let i = 0;
  // (exponent bits) + 2^23 carries into bit 31 exactly when the exponent is all ones.
  for (; i + 4 <= n; i += 4) {
    flags |=
      ((bits[i] & 0x7f800000) + 0x00800000) |
      ((bits[i + 1] & 0x7f800000) + 0x00800000) |
      ((bits[i + 2] & 0x7f800000) + 0x00800000) |
      ((bits[i + 3] & 0x7f800000) + 0x00800000);
  }
  for (; i < n; i++) flags |= (bits[i] & 0x7f800000) + 0x00800000;
  if (flags >= 0) return -1;
  for (let j = 0; j < n; j++) if (!Number.isFinite(data[j])) return j;
  return -1;
}
