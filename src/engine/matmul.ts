// Matrix-product kernels (forward/backward pairs) over flat row-major Float32Arrays.
// Two weight orientations: HF Conv1D keeps W as [in, out]; the LM head (token embedding) is [out, in].
// Large products run in the WebAssembly SIMD gemm (operands copied into its memory); small ones and runtimes
// without WebAssembly SIMD use the plain loops below, which define the results.
import { type WasmArena, wasmArena } from './wasm/runtime.js';

/** Products below this many multiply-adds stay in JS: copying into WebAssembly memory would not pay. */
const WASM_MIN_MACS = 1 << 16;

/** A Float32Array operand placed in WebAssembly memory: its offset and whether it was copied there. */
function place(arena: WasmArena, data: Float32Array, floats: number, temps: number[]): number {
  if (arena.owns(data)) return data.byteOffset;
  const ptr = arena.alloc(floats * 4);
  temps.push(ptr, floats * 4);
  arena.f32(ptr, floats).set(floats === data.length ? data : data.subarray(0, floats));
  return ptr;
}

function release(arena: WasmArena, temps: number[]): void {
  for (let i = 0; i < temps.length; i += 2) arena.free(temps[i], temps[i + 1]);
}

/**
 * A thread that runs gemm over the same WebAssembly memory as this one (see src/runtime/gemm-threads.ts).
 * `start` hands it the 13 gemm arguments and returns at once; `wait` blocks until that call has finished.
 */
export interface GemmHelper {
  /** Gemm scratch of its own at this byte offset (gemmWorkBytes() + 128 bytes). */
  readonly work: number;
  start(args: Int32Array): void;
  wait(): void;
}

/** Products from this many multiply-adds are split across the helpers: below, waking a thread would not pay. */
const PARALLEL_MIN_MACS = 1 << 22;
let helpers: readonly GemmHelper[] = [];
let helpersMemory: WebAssembly.Memory | null = null;

/**
 * Lets large gemms run on `more` as well as on the calling thread, splitting C's rows (or its columns when it
 * is wide) into equal parts; `memory` is the arena memory they run over. Empty: back to one thread.
 * Results are bit-identical either way: every element of C sums k in the same order whatever the split.
 */
export function setGemmHelpers(more: readonly GemmHelper[], memory: WebAssembly.Memory | null): void {
  helpers = more;
  helpersMemory = memory;
}

/** Threads a large product uses now (the calling one included). */
export function gemmThreads(): number {
  return helpers.length + 1;
}

/** Each arena's gemm scratch (packed blocks of A and B, one edge tile), allocated once. */
const gemmWork = new WeakMap<WasmArena, number>();

function workFor(arena: WasmArena): number {
  let ptr = gemmWork.get(arena);
  if (ptr === undefined) {
    ptr = arena.alloc(arena.kernels.gemmWorkBytes() + 128);
    gemmWork.set(arena, ptr);
  }
  return ptr;
}

/**
 * out[M×N] (+)= A·B on the WebAssembly gemm. A is [M×K] or, with `aT`, stored [K×M]; B is [K×N] or, with
 * `bT`, stored [N×K] (the gemm packs either orientation). `bias` (length N) starts every row.
 */
function gemmWasm(
  arena: WasmArena,
  out: Float32Array,
  accumulate: boolean,
  a: Float32Array,
  aT: boolean,
  b: Float32Array,
  bT: boolean,
  bias: Float32Array | null,
  M: number,
  N: number,
  K: number,
): void {
  const temps: number[] = [];
  try {
    const aPtr = place(arena, a, M * K, temps);
    const bPtr = place(arena, b, K * N, temps);
    const owned = arena.owns(out);
    const cPtr = owned ? out.byteOffset : arena.alloc(M * N * 4);
    if (!owned) temps.push(cPtr, M * N * 4);
    const c = arena.f32(cPtr, M * N);
    if (bias) for (let i = 0; i < M; i++) c.set(bias.subarray(0, N), i * N);
    else if (accumulate && !owned) c.set(out.subarray(0, M * N));
    const sAi = aT ? 1 : K;
    const sAk = aT ? M : 1;
    const sBk = bT ? 1 : N;
    const sBj = bT ? K : 1;
    const add = accumulate || bias !== null;
    const parts = arena.memory === helpersMemory && M * N * K >= PARALLEL_MIN_MACS ? helpers.length + 1 : 1;
    if (parts === 1)
      arena.kernels.gemm(cPtr, aPtr, sAi, sAk, bPtr, sBk, sBj, M, N, K, N, add, workFor(arena));
    else gemmSplit(arena, parts, cPtr, aPtr, sAi, sAk, bPtr, sBk, sBj, M, N, K, add);
    if (!owned) out.set(c);
  } finally {
    release(arena, temps);
  }
}

/**
 * One gemm cut into `parts` pieces of C: rows in multiples of 4 (columns in multiples of 8 when C is wider
 * than tall), the first parts - 1 on the helpers, the last on this thread; returns when all are done.
 */
function gemmSplit(
  arena: WasmArena,
  parts: number,
  c: number,
  a: number,
  sAi: number,
  sAk: number,
  b: number,
  sBk: number,
  sBj: number,
  M: number,
  N: number,
  K: number,
  add: boolean,
): void {
  const byRows = M >= N;
  const unit = byRows ? 4 : 8;
  const extent = byRows ? M : N;
  const step = Math.ceil(extent / parts / unit) * unit;
  const started: GemmHelper[] = [];
  let failure: unknown = null;
  try {
    for (let p = 0, from = 0; from < extent; p++, from += step) {
      const size = Math.min(step, extent - from);
      const cp = c + 4 * (byRows ? from * N : from);
      const ap = byRows ? a + 4 * from * sAi : a;
      const bp = byRows ? b : b + 4 * from * sBj;
      const m = byRows ? size : M;
      const n = byRows ? N : size;
      if (from + size < extent && p < parts - 1) {
        const h = helpers[p];
        h.start(Int32Array.of(cp, ap, sAi, sAk, bp, sBk, sBj, m, n, K, N, add ? 1 : 0, h.work));
        started.push(h);
      } else {
        arena.kernels.gemm(cp, ap, sAi, sAk, bp, sBk, sBj, m, n, K, N, add, workFor(arena));
        break;
      }
    }
  } catch (e) {
    failure = e;
  }
  // Every started piece is waited for before any failure is reported: none may still write into C.
  for (const h of started) {
    try {
      h.wait();
    } catch (e) {
      failure ??= e;
    }
  }
  if (failure) throw failure;
}

/** The arena when a product of M·N·K multiply-adds should run in WebAssembly, else null. */
function wasmFor(M: number, N: number, K: number): WasmArena | null {
  return M * N * K >= WASM_MIN_MACS ? wasmArena() : null;
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
