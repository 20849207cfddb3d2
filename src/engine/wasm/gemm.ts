// The WebAssembly gemm driver: operands copied into the kernels' memory in chunks that overlap the work, and
// large products split between this thread and its helpers (see threads.ts). matmul.ts calls it.
import type { WasmArena } from './runtime.js';
import { helpersOver, type KernelHelper } from './threads.js';

/** Products from this many multiply-adds are split across the helpers: below, waking a thread would not pay. */
const PARALLEL_MIN_MACS = 1 << 22;

function release(arena: WasmArena, temps: number[]): void {
  for (let i = 0; i < temps.length; i += 2) arena.free(temps[i], temps[i + 1]);
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
 * A float copied in or out costs about this many of one thread's gemm multiply-adds (copying is memory-bound). Only the first chunk's split uses it; later
 * chunks use what the previous one measured.
 */
const COPY_MACS = 10;
/**
 * Floats copied per chunk of the copy pipeline (16 MiB): large enough that a strided part (a column range of
 * every row) copies in runs of several KiB, which stream nearly as fast as one contiguous copy.
 */
const CHUNK_FLOATS = 1 << 22;
/** Chunks along k are multiples of the kernel's k-block (KC = 256), so every sum keeps the order of one gemm. */
const K_STEP = 256;

type Dim = 'M' | 'N' | 'K';

/** One operand of a gemm as stored: [rows × cols] row-major, whose rows and columns run along these dims. */
interface Operand {
  readonly src: Float32Array;
  /** The arena copy (or src itself when the arena owns it). */
  readonly view: Float32Array;
  readonly ptr: number;
  /** True when src lives outside the arena, so its pieces are copied. */
  readonly copied: boolean;
  readonly rows: number;
  readonly cols: number;
  readonly rowDim: Dim;
  readonly colDim: Dim;
}

function operand(
  arena: WasmArena,
  src: Float32Array,
  rows: number,
  cols: number,
  rowDim: Dim,
  colDim: Dim,
  temps: number[],
): Operand {
  const floats = rows * cols;
  if (arena.owns(src))
    return { src, view: src, ptr: src.byteOffset, copied: false, rows, cols, rowDim, colDim };
  const ptr = arena.alloc(floats * 4);
  temps.push(ptr, floats * 4);
  return { src, view: arena.f32(ptr, floats), ptr, copied: true, rows, cols, rowDim, colDim };
}

/** Copies the part of `o` whose `dim` index lies in [d0, d1) (all of it when o does not run along dim). */
function copyPart(o: Operand, dim: Dim, d0: number, d1: number, out: boolean): void {
  const [from, to] = out ? [o.view, o.src] : [o.src, o.view];
  const ld = o.cols;
  if (o.colDim !== dim) {
    const [r0, r1] = o.rowDim === dim ? [d0, d1] : [0, o.rows];
    to.set(from.subarray(r0 * ld, r1 * ld), r0 * ld);
    return;
  }
  for (let r = 0; r < o.rows; r++) to.set(from.subarray(r * ld + d0, r * ld + d1), r * ld + d0);
}

/** Writes the bias into rows × [c0, c1) of C. */
function fillBias(c: Operand, bias: Float32Array, r0: number, r1: number, c0: number, c1: number): void {
  const part = bias.subarray(c0, c1);
  for (let r = r0; r < r1; r++) c.view.set(part, r * c.cols + c0);
}

/**
 * out[M×N] (+)= A·B on the WebAssembly gemm. A is [M×K] or, with `aT`, stored [K×M]; B is [K×N] or, with
 * `bT`, stored [N×K] (the gemm packs either orientation). `bias` (length N) starts every row.
 * Operands outside WebAssembly memory are copied in (and C out) in chunks along the product's largest
 * dimension, each copied while the helpers multiply the previous one, so copying mostly overlaps the work.
 */
export function gemmWasm(
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
    const A = aT ? operand(arena, a, K, M, 'K', 'M', temps) : operand(arena, a, M, K, 'M', 'K', temps);
    const B = bT ? operand(arena, b, N, K, 'N', 'K', temps) : operand(arena, b, K, N, 'K', 'N', temps);
    const C = operand(arena, out, M, N, 'M', 'N', temps);
    const D: Dim = K >= M && K >= N ? 'K' : M >= N ? 'M' : 'N';
    const extent = D === 'K' ? K : D === 'M' ? M : N;
    const cIn = bias !== null || (accumulate && C.copied);
    const along = (o: Operand) => o.rowDim === D || o.colDim === D;
    const pieces = [A, B, ...(C.copied || cIn ? [C] : [])].filter((o) => along(o) && (o.copied || o === C));
    // Floats copied per index along D; operands not along D are copied once, up front.
    const perIndex = pieces.reduce(
      (s, o) => s + (o === C ? (cIn ? 1 : 0) + (C.copied ? 1 : 0) : 1) * ((o.rows * o.cols) / extent),
      0,
    );
    const step = D === 'K' ? K_STEP : 64;
    const chunk =
      perIndex * extent >= 2 * CHUNK_FLOATS
        ? Math.max(step, Math.floor(CHUNK_FLOATS / perIndex / step) * step)
        : extent;
    for (const o of [A, B]) if (o.copied && !along(o)) copyPart(o, D, 0, extent, false);
    if (!along(C)) {
      if (bias) fillBias(C, bias, 0, M, 0, N);
      else if (cIn) copyPart(C, D, 0, extent, false);
    }
    const copyIn = (d0: number, d1: number) => {
      for (const o of [A, B]) if (o.copied && along(o)) copyPart(o, D, d0, d1, false);
      if (!along(C)) return;
      if (bias) {
        if (D === 'M') fillBias(C, bias, d0, d1, 0, N);
        else fillBias(C, bias, 0, M, d0, d1);
      } else if (cIn) copyPart(C, D, d0, d1, false);
    };
    const copyOut = (d0: number, d1: number) => {
      if (C.copied && along(C)) copyPart(C, D, d0, d1, true);
    };
    const add = accumulate || bias !== null;
    const helpers = helpersOver(arena.memory);
    const parts = M * N * K >= PARALLEL_MIN_MACS ? helpers.length + 1 : 1;
    const region: Region = { arena, A, B, C, aT, bT, M, N, K, i0: 0, i1: M, j0: 0, j1: N, k0: 0, k1: K, add };
    // Share of each chunk this thread computes: less than 1/parts while it also copies.
    let copyRatio = chunk < extent ? (perIndex * COPY_MACS) / ((M * N * K) / extent) : 0;
    copyIn(0, chunk);
    for (let d0 = 0; d0 < extent; d0 += chunk) {
      const d1 = Math.min(extent, d0 + chunk);
      if (D === 'M') Object.assign(region, { i0: d0, i1: d1 });
      else if (D === 'N') Object.assign(region, { j0: d0, j1: d1 });
      else Object.assign(region, { k0: d0, k1: d1 });
      const share = parts === 1 ? 1 : Math.max(0, (1 - copyRatio * (parts - 1)) / parts);
      const measured = runSplit(region, parts, share, () => {
        const t0 = performance.now();
        if (d1 < extent) copyIn(d1, Math.min(extent, d1 + chunk));
        if (d0 > 0) copyOut(d0 - chunk, d0);
        return performance.now() - t0;
      });
      // Smoothed: one chunk's copy can be slowed by page faults or a busy machine.
      if (measured) copyRatio = (copyRatio + measured) / 2;
    }
    copyOut(extent - ((extent - 1) % chunk) - 1, extent);
    if (!along(C) && C.copied) out.set(C.view);
  } finally {
    release(arena, temps);
  }
}

/** The part of a gemm one call computes: C[i0:i1, j0:j1] (+)= A[i0:i1, k0:k1]·B[k0:k1, j0:j1]. */
interface Region {
  arena: WasmArena;
  A: Operand;
  B: Operand;
  C: Operand;
  aT: boolean;
  bT: boolean;
  M: number;
  N: number;
  K: number;
  i0: number;
  i1: number;
  j0: number;
  j1: number;
  k0: number;
  k1: number;
  add: boolean;
}

/** The 13 gemm arguments for rows [i0, i1) × columns [j0, j1) of region r. */
function gemmArgs(r: Region, i0: number, i1: number, j0: number, j1: number, work: number): Int32Array {
  const sAi = r.aT ? 1 : r.K;
  const sAk = r.aT ? r.M : 1;
  const sBk = r.bT ? 1 : r.N;
  const sBj = r.bT ? r.K : 1;
  return Int32Array.of(
    r.C.ptr + 4 * (i0 * r.N + j0),
    r.A.ptr + 4 * (i0 * sAi + r.k0 * sAk),
    sAi,
    sAk,
    r.B.ptr + 4 * (r.k0 * sBk + j0 * sBj),
    sBk,
    sBj,
    i1 - i0,
    j1 - j0,
    r.k1 - r.k0,
    r.N,
    r.add || r.k0 > 0 ? 1 : 0,
    work,
  );
}

/**
 * Computes region r on `parts` threads: its rows in multiples of 4 (columns in multiples of 8 when it is wider
 * than tall) cut so this thread takes `share` and the helpers the rest, while `meanwhile` (copies for other
 * chunks) runs here first. Returns when all are done, with the copy time as a share of the time one thread
 * takes for the whole region (for the next chunk's split), or 0 when there was nothing to measure.
 */
function runSplit(r: Region, parts: number, share: number, meanwhile: () => number): number {
  const helpers = helpersOver(r.arena.memory);
  const rows = r.i1 - r.i0;
  const cols = r.j1 - r.j0;
  const byRows = rows >= cols;
  const unit = byRows ? 4 : 8;
  const extent = byRows ? rows : cols;
  const own = parts === 1 ? extent : Math.min(extent, Math.round((share * extent) / unit) * unit);
  const step = parts === 1 ? 0 : Math.ceil((extent - own) / (parts - 1) / unit) * unit;
  const range = (from: number, to: number): [number, number, number, number] =>
    byRows ? [r.i0 + from, r.i0 + to, r.j0, r.j1] : [r.i0, r.i1, r.j0 + from, r.j0 + to];
  const started: KernelHelper[] = [];
  let failure: unknown = null;
  let ratio = 0;
  let copyMs = 0;
  try {
    let from = 0;
    for (let p = 0; p < parts - 1 && from < extent - own; p++) {
      const to = Math.min(extent - own, from + step);
      const h = helpers[p];
      h.start('gemm', gemmArgs(r, ...range(from, to), h.work));
      started.push(h);
      from = to;
    }
    copyMs = meanwhile();
    if (own > 0) {
      const t0 = performance.now();
      const g = gemmArgs(r, ...range(extent - own, extent), workFor(r.arena));
      r.arena.kernels.gemm(
        g[0],
        g[1],
        g[2],
        g[3],
        g[4],
        g[5],
        g[6],
        g[7],
        g[8],
        g[9],
        g[10],
        g[11] !== 0,
        g[12],
      );
      const ms = performance.now() - t0;
      // copy time ÷ time to compute the whole chunk at this thread's rate
      if (ms > 0) ratio = copyMs / ((ms * extent) / own);
    }
  } catch (e) {
    failure = e;
  }
  const waitFrom = performance.now();
  // Every started piece is waited for before any failure is reported: none may still write into C.
  for (const h of started) {
    try {
      h.wait();
    } catch (e) {
      failure ??= e;
    }
  }
  if (failure) throw failure;
  // This thread computed nothing: the helpers took about copy + wait time each for the whole chunk.
  const waited = performance.now() - waitFrom;
  if (ratio === 0 && started.length > 0 && copyMs > 0) ratio = copyMs / ((copyMs + waited) * started.length);
  return ratio;
}
