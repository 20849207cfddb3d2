// Matrix products (forward/backward pairs) over flat row-major Float32Arrays: the plain loops below define the
// results; large products go to the WebAssembly gemm (wasm/gemm.ts) where the kernels are available.
// Two weight orientations: HF Conv1D keeps W as [in, out]; the LM head (token embedding) is [out, in].
import { gemmWasm } from './wasm/gemm.js';
import { type WasmArena, wasmArena } from './wasm/runtime.js';
import { kernelThreads } from './wasm/threads.js';

/** Products below this many multiply-adds stay in JS: copying into WebAssembly memory would not pay. */
const WASM_MIN_MACS = 1 << 16;

/** The arena when a product of M·N·K multiply-adds should run in WebAssembly, else null. */
function wasmFor(M: number, N: number, K: number): WasmArena | null {
  return M * N * K >= WASM_MIN_MACS ? wasmArena() : null;
}

/** Threads a large product uses now (the calling one included). */
export function gemmThreads(): number {
  return kernelThreads();
}

/**
 * out[N, OC] = inp[N, IC] · W[IC, OC] + bias[OC]   (HF Conv1D).
 * Rows are processed four at a time so each weight row is read once per four outputs.
 */
export function matmulForward(
  out: Float32Array,
  inp: Float32Array,
  weight: Float32Array,
  bias: Float32Array | null,
  N: number,
  IC: number,
  OC: number,
): void {
  const arena = wasmFor(N, OC, IC);
  if (arena) {
    gemmWasm(arena, out, false, inp, false, weight, false, bias, N, OC, IC);
    return;
  }
  matmulForwardLoops(out, inp, weight, bias, N, IC, OC);
}

/**
 * matmulForward in plain loops: each output row is bias + Σ_c in channel order, the same for a row alone and
 * within a group of four (what the engine's pure-JS decode relies on).
 */
export function matmulForwardLoops(
  out: Float32Array,
  inp: Float32Array,
  weight: Float32Array,
  bias: Float32Array | null,
  N: number,
  IC: number,
  OC: number,
): void {
  let n = 0;
  for (; n + 4 <= N; n += 4) {
    const o0 = n * OC;
    const o1 = o0 + OC;
    const o2 = o1 + OC;
    const o3 = o2 + OC;
    for (let o = 0; o < OC; o++) {
      const b = bias ? bias[o] : 0;
      out[o0 + o] = b;
      out[o1 + o] = b;
      out[o2 + o] = b;
      out[o3 + o] = b;
    }
    const i0 = n * IC;
    for (let c = 0; c < IC; c++) {
      const a0 = inp[i0 + c];
      const a1 = inp[i0 + IC + c];
      const a2 = inp[i0 + 2 * IC + c];
      const a3 = inp[i0 + 3 * IC + c];
      const w = c * OC;
      for (let o = 0; o < OC; o++) {
        const wv = weight[w + o];
        out[o0 + o] += a0 * wv;
        out[o1 + o] += a1 * wv;
        out[o2 + o] += a2 * wv;
        out[o3 + o] += a3 * wv;
      }
    }
  }
  for (; n < N; n++) {
    const oo = n * OC;
    for (let o = 0; o < OC; o++) out[oo + o] = bias ? bias[o] : 0;
    const i0 = n * IC;
    for (let c = 0; c < IC; c++) {
      const a = inp[i0 + c];
      const w = c * OC;
      for (let o = 0; o < OC; o++) out[oo + o] += a * weight[w + o];
    }
  }
}

/**
 * Backward of matmulForward; accumulates into dinp[N, IC], dweight[IC, OC], dbias[OC].
 * dinp = dout · Wᵀ, dW = inpᵀ · dout, dbias = Σ_n dout.
 */
export function matmulBackward(
  dinp: Float32Array,
  dweight: Float32Array,
  dbias: Float32Array | null,
  dout: Float32Array,
  inp: Float32Array,
  weight: Float32Array,
  N: number,
  IC: number,
  OC: number,
): void {
  const arena = wasmFor(N, OC, IC);
  if (arena) {
    // dinp[N×IC] += dout[N×OC]·W[IC×OC]ᵀ; dW[IC×OC] += inp[N×IC]ᵀ·dout[N×OC].
    gemmWasm(arena, dinp, true, dout, false, weight, true, null, N, IC, OC);
    gemmWasm(arena, dweight, true, inp, true, dout, false, null, IC, OC, N);
    if (dbias) {
      for (let n = 0; n < N; n++) {
        const d = n * OC;
        for (let o = 0; o < OC; o++) dbias[o] += dout[d + o];
      }
    }
    return;
  }
  for (let n = 0; n < N; n++) {
    const d = n * OC;
    const i = n * IC;
    for (let c = 0; c < IC; c++) {
      const w = c * OC;
      let s = 0;
      for (let o = 0; o < OC; o++) s += dout[d + o] * weight[w + o];
      dinp[i + c] += s;
    }
  }
  for (let c = 0; c < IC; c++) {
    const w = c * OC;
    let n = 0;
    for (; n + 4 <= N; n += 4) {
      const a0 = inp[n * IC + c];
      const a1 = inp[(n + 1) * IC + c];
      const a2 = inp[(n + 2) * IC + c];
      const a3 = inp[(n + 3) * IC + c];
      const d0 = n * OC;
      const d1 = d0 + OC;
      const d2 = d1 + OC;
      const d3 = d2 + OC;
      for (let o = 0; o < OC; o++) {
        dweight[w + o] += a0 * dout[d0 + o] + a1 * dout[d1 + o] + a2 * dout[d2 + o] + a3 * dout[d3 + o];
      }
    }
    for (; n < N; n++) {
      const a = inp[n * IC + c];
      const d = n * OC;
      for (let o = 0; o < OC; o++) dweight[w + o] += a * dout[d + o];
    }
  }
  if (dbias) {
    for (let n = 0; n < N; n++) {
      const d = n * OC;
      for (let o = 0; o < OC; o++) dbias[o] += dout[d + o];
    }
  }
}

/**
 * out[N, OC] = inp[N, IC] · W[OC, IC]ᵀ   (LM head: W is the token embedding, one row per output unit).
 * Four input rows share each weight row, sums are kept in doubles.
 */
export function matmulTransposedForward(
  out: Float32Array,
  inp: Float32Array,
  weight: Float32Array,
  N: number,
  IC: number,
  OC: number,
): void {
  const arena = wasmFor(N, OC, IC);
  if (arena) {
    gemmWasm(arena, out, false, inp, false, weight, true, null, N, OC, IC);
    return;
  }
  let n = 0;
  for (; n + 4 <= N; n += 4) {
    const i0 = n * IC;
    const i1 = i0 + IC;
    const i2 = i1 + IC;
    const i3 = i2 + IC;
    for (let o = 0; o < OC; o++) {
      const w = o * IC;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let c = 0; c < IC; c++) {
        const wv = weight[w + c];
        s0 += inp[i0 + c] * wv;
        s1 += inp[i1 + c] * wv;
        s2 += inp[i2 + c] * wv;
        s3 += inp[i3 + c] * wv;
      }
      out[n * OC + o] = s0;
      out[(n + 1) * OC + o] = s1;
      out[(n + 2) * OC + o] = s2;
      out[(n + 3) * OC + o] = s3;
    }
  }
  for (; n < N; n++) {
    const i = n * IC;
    for (let o = 0; o < OC; o++) {
      const w = o * IC;
      let s = 0;
      for (let c = 0; c < IC; c++) s += inp[i + c] * weight[w + c];
      out[n * OC + o] = s;
    }
  }
}

/** Backward of matmulTransposedForward; accumulates dinp[N, IC] += dout·W and dweight[OC, IC] += doutᵀ·inp. */
export function matmulTransposedBackward(
  dinp: Float32Array,
  dweight: Float32Array,
  dout: Float32Array,
  inp: Float32Array,
  weight: Float32Array,
  N: number,
  IC: number,
  OC: number,
): void {
  matmulTransposedBackwardInput(dinp, dout, weight, N, IC, OC);
  matmulTransposedBackwardWeight(dweight, dout, inp, N, IC, OC);
}

/** dinp[N, IC] += dout[N, OC] · W[OC, IC]  (the LM head's input gradient). */
export function matmulTransposedBackwardInput(
  dinp: Float32Array,
  dout: Float32Array,
  weight: Float32Array,
  N: number,
  IC: number,
  OC: number,
): void {
  const arena = wasmFor(N, IC, OC);
  if (arena) {
    gemmWasm(arena, dinp, true, dout, false, weight, false, null, N, IC, OC);
    return;
  }
  for (let n = 0; n < N; n++) {
    const i = n * IC;
    const d = n * OC;
    for (let o = 0; o < OC; o++) {
      const g = dout[d + o];
      if (g === 0) continue;
      const w = o * IC;
      for (let c = 0; c < IC; c++) dinp[i + c] += g * weight[w + c];
    }
  }
}

/** dweight[OC, IC] += dout[N, OC]ᵀ · inp[N, IC]  (the LM head's weight gradient). */
export function matmulTransposedBackwardWeight(
  dweight: Float32Array,
  dout: Float32Array,
  inp: Float32Array,
  N: number,
  IC: number,
  OC: number,
): void {
  const arena = wasmFor(OC, IC, N);
  if (arena) {
    gemmWasm(arena, dweight, true, dout, true, inp, false, null, OC, IC, N);
    return;
  }
  for (let o = 0; o < OC; o++) {
    const w = o * IC;
    for (let n = 0; n < N; n++) {
      const g = dout[n * OC + o];
      if (g === 0) continue;
      const i = n * IC;
      for (let c = 0; c < IC; c++) dweight[w + c] += g * inp[i + c];
    }
  }
}
