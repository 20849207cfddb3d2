// The q8_0 weight format: GGUF's Q8_0 (blocks of 32 int8 weights with one f16 scale along each row of the
// [out, in] matrix), packed four rows at a time for the SIMD kernels, and products against int8-quantised
// inputs as llama.cpp computes them (integer dot products per block, then the two scales).
import type { WasmArena } from '../wasm/runtime.js';
import { SplitCall } from '../wasm/threads.js';
import { PARALLEL_MIN_MACS } from './f32.js';
import { f16Bits, halfToFloat, roundToHalf } from './half.js';
import type { Linear } from './linear.js';

/** Weights per block. */
export const Q8_BLOCK = 32;
/** Bytes per block in GGUF: the f16 scale, then 32 int8. */
export const Q8_BLOCK_BYTES = 34;
/** Bytes of GGUF blocks the kernels pack or quantise per call (short calls reach V8's optimised code). */
const PACK_CHUNK_BYTES = 256 * 1024;

/** Whether a [rows, cols] matrix can be stored as Q8_0 (its rows split into whole blocks). */
export function q8Eligible(cols: number): boolean {
  return cols > 0 && cols % Q8_BLOCK === 0;
}

/** C's roundf: to nearest, halves away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** To nearest, halves to even (SIMD nearest). */
function roundEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * GGUF Q8_0 blocks of the [rows, cols] matrix whose element (r, c) is src[r·rowStride + c·colStride], quantised as
 * gguf-py does (d = amax/127 in float32, q = roundf(x · (1/d)), d stored as f16). A transposed source (rowStride 1,
 * e.g. a Conv1D weight [in, out]) is read 32 columns at a time across all rows, so both layouts read memory in order.
 */
export function quantizeQ8_0(
  src: Float32Array,
  rows: number,
  cols: number,
  rowStride: number,
  colStride: number,
): Uint8Array {
  if (!q8Eligible(cols)) throw new RangeError(`Q8_0 needs rows of whole 32-blocks, got ${cols} columns`);
  const NB = cols / Q8_BLOCK;
  const out = new Uint8Array(rows * NB * Q8_BLOCK_BYTES);
  const q = new Int8Array(out.buffer);
  const f = Math.fround;
  /** Writes block b of row r: scale d (amax/127 as float32) and the values x(i)·(1/d). */
  const block = (r: number, b: number, amax: number, x: (i: number) => number): void => {
    const d = f(amax / 127);
    const id = d === 0 ? 0 : f(1 / d);
    const h = f16Bits(d);
    const at = (r * NB + b) * Q8_BLOCK_BYTES;
    out[at] = h & 0xff;
    out[at + 1] = h >>> 8;
    for (let i = 0; i < Q8_BLOCK; i++) {
      const v = roundAway(f(x(i) * id));
      q[at + 2 + i] = Math.max(-127, Math.min(127, v));
    }
  };
  if (!(rowStride === 1 && colStride === rows)) {
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < NB; b++) {
        const base = r * rowStride + b * Q8_BLOCK * colStride;
        let amax = 0;
        for (let i = 0; i < Q8_BLOCK; i++) amax = Math.max(amax, Math.abs(src[base + i * colStride]));
        block(r, b, amax, (i) => src[base + i * colStride]);
      }
    }
    return out;
  }
  // Stored transposed ([cols, rows], a Conv1D weight): 32 stored rows, one block of every output row, at a time.
  const amax = new Float32Array(rows);
  const tile = new Float32Array(Q8_BLOCK * rows);
  for (let b = 0; b < NB; b++) {
    tile.set(src.subarray(b * Q8_BLOCK * rows, (b + 1) * Q8_BLOCK * rows));
    amax.fill(0);
    for (let i = 0; i < Q8_BLOCK; i++)
      for (let r = 0; r < rows; r++) {
        const a = Math.abs(tile[i * rows + r]);
        if (a > amax[r]) amax[r] = a;
      }
    for (let r = 0; r < rows; r++) block(r, b, amax[r], (i) => tile[i * rows + r]);
  }
  return out;
}

/** The floats of GGUF Q8_0 blocks of a [rows, cols] matrix (each d·q rounded to float32, as ggml dequantises). */
export function dequantizeQ8_0(blocks: Uint8Array, rows: number, cols: number): Float32Array {
  const NB = cols / Q8_BLOCK;
  const out = new Float32Array(rows * cols);
  const view = new DataView(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < NB; b++) {
      const at = (r * NB + b) * Q8_BLOCK_BYTES;
      const d = halfToFloat(view.getUint16(at, true));
      for (let i = 0; i < Q8_BLOCK; i++) out[r * cols + b * Q8_BLOCK + i] = d * view.getInt8(at + 2 + i);
    }
  }
  return out;
}

/** Where a packed Q8_0 matrix lies in a shared WebAssembly memory (see Q8Matrix). */
export interface SharedQ8 {
  q: number;
  d: number;
  wide: boolean;
}

/**
 * A Q8_0 matrix [rows, cols] packed for the kernels: weights [rows/4][cols/32][8 groups][4 rows][4 bytes] int8
 * (four rows side by side, four inputs at a time) and scales [rows/4][cols/32][4 rows] as float32 (the f16
 * values, exact). Rows past `rows` (to a whole four) are zero.
 */
export class Q8Matrix {
  readonly quads: number;
  readonly NB: number;
  /** Bytes a pass over the matrix reads (the GGUF blocks' size). */
  readonly bytes: number;
  /** Packed weights and scales: views of the arena's memory, or plain arrays on the pure-JS path. */
  readonly q: Int8Array;
  readonly d: Float32Array;
  /** True when a weight is −128 (never written by llama.cpp or gguf-py): the kernels then avoid relaxed SIMD. */
  wide = false;
  /** What the kernels' `plain` argument gets: int16 dot products instead of relaxed SIMD's (see q8Block). */
  plain: boolean;
  private finiteCache: boolean | null = null;

  /**
   * Packs GGUF Q8_0 `blocks` of a [rows, cols] matrix (into memory from `alloc`, or plain arrays), or adopts a
   * packing another thread shared (`shared`, in `arena`'s memory). `blocks: null` leaves it zero, for
   * quantiseRows/packBlocks to fill (with the kernels).
   */
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly arena: WasmArena | null,
    source: { blocks: Uint8Array | null; alloc: ((bytes: number) => number) | null } | { shared: SharedQ8 },
  ) {
    if (!q8Eligible(cols)) throw new RangeError(`Q8_0 needs rows of whole 32-blocks, got ${cols} columns`);
    this.quads = Math.ceil(rows / 4);
    this.NB = cols / Q8_BLOCK;
    this.bytes = rows * this.NB * Q8_BLOCK_BYTES;
    const qBytes = this.quads * this.NB * 128;
    const dFloats = this.quads * this.NB * 4;
    this.plain = !arena?.relaxedDot;
    if ('shared' in source) {
      if (!arena) throw new Error('a shared Q8_0 matrix needs the kernels');
      this.q = arena.i8(source.shared.q, qBytes);
      this.d = arena.f32(source.shared.d, dFloats);
      this.wide = source.shared.wide;
      this.plain = this.wide || !arena.relaxedDot;
      return;
    }
    const { blocks, alloc } = source;
    if (blocks && blocks.byteLength !== this.bytes)
      throw new RangeError(`Q8_0 ${rows}×${cols}: ${blocks.byteLength} bytes, expected ${this.bytes}`);
    if (arena && alloc) {
      this.q = arena.i8(alloc(qBytes), qBytes);
      this.d = arena.f32(alloc(dFloats * 4), dFloats);
    } else {
      if (!blocks) throw new Error('an empty Q8_0 matrix is filled by the kernels, unavailable here');
      this.q = new Int8Array(qBytes);
      this.d = new Float32Array(dFloats);
    }
    this.q.fill(0);
    this.d.fill(0);
    if (!blocks) return;
    if (arena && alloc) {
      const rowBytes = this.NB * Q8_BLOCK_BYTES;
      this.packRows((first, n, into) => into.set(blocks.subarray(first * rowBytes, (first + n) * rowBytes)));
      return;
    }
    const signed = new Int8Array(blocks.buffer, blocks.byteOffset, blocks.byteLength);
    let wide = false;
    const NB = this.NB;
    const { q, d } = this;
    for (let r = 0; r < rows; r++) {
      const quad = r >> 2;
      const lane = r & 3;
      for (let b = 0; b < NB; b++) {
        const at = (r * NB + b) * Q8_BLOCK_BYTES;
        d[(quad * NB + b) * 4 + lane] = halfToFloat(blocks[at] | (blocks[at + 1] << 8));
        const base = (quad * NB + b) * 128 + lane * 4;
        for (let g = 0; g < 8; g++) {
          const s = at + 2 + g * 4;
          const o = base + g * 16;
          q[o] = signed[s];
          q[o + 1] = signed[s + 1];
          q[o + 2] = signed[s + 2];
          q[o + 3] = signed[s + 3];
          if (
            signed[s] === -128 ||
            signed[s + 1] === -128 ||
            signed[s + 2] === -128 ||
            signed[s + 3] === -128
          )
            wide = true;
        }
      }
    }
    this.wide = wide;
    this.plain = wide || !arena?.relaxedDot;
  }

  /**
   * Packs every row from its GGUF blocks, which `readRows` puts into `into` (rows [first, first + n)) a few
   * rows at a time, in scratch in the kernels' memory: the blocks are never held whole there.
   */
  packRows(readRows: (first: number, n: number, into: Uint8Array) => void): void {
    const arena = this.arena as WasmArena;
    const rowBytes = this.NB * Q8_BLOCK_BYTES;
    const chunkRows = Math.max(1, Math.floor(PACK_CHUNK_BYTES / rowBytes));
    const bytes = Math.min(this.rows, chunkRows) * rowBytes;
    const scratch = arena.alloc(bytes);
    try {
      for (let r0 = 0; r0 < this.rows; r0 += chunkRows) {
        const n = Math.min(chunkRows, this.rows - r0);
        readRows(r0, n, arena.u8(scratch, n * rowBytes));
        this.packBlocks(scratch, r0, n);
      }
    } finally {
      arena.free(scratch, bytes);
    }
  }

  /** Packs `count` rows from row r0 given as GGUF blocks at `ptr` in the kernels' memory (see q8PackBlocks). */
  packBlocks(ptr: number, r0: number, count: number): void {
    const arena = this.arena as WasmArena;
    if (arena.kernels.q8PackBlocks(this.q.byteOffset, this.d.byteOffset, ptr, r0, count, this.NB))
      this.wide = true;
    this.plain = this.wide || !arena.relaxedDot;
    this.finiteCache = null;
  }

  /**
   * Quantises rows [r0, r0 + n) from float32 in the kernels' memory, as quantizeQ8_0 does (the same bytes):
   * `src` holds them row-major ([n, cols]), or, with `transposed`, is the whole matrix stored [cols, rows]
   * (a Conv1D weight).
   */
  quantiseRows(src: Float32Array, r0: number, n: number, transposed = false): void {
    const arena = this.arena as WasmArena;
    if (!arena.owns(src)) throw new Error("quantiseRows reads float32 in the kernels' memory");
    const rowBytes = this.NB * Q8_BLOCK_BYTES;
    const chunkRows = Math.max(4, Math.floor(PACK_CHUNK_BYTES / rowBytes) & ~3);
    const scratchBytes = Math.min(n, chunkRows) * rowBytes + 512;
    const scratch = arena.alloc(scratchBytes);
    const k = arena.kernels;
    try {
      for (let r = 0; r < n; r += chunkRows) {
        const count = Math.min(chunkRows, n - r);
        if (transposed)
          k.q8WeightColumns(
            scratch,
            src.byteOffset + (r0 + r) * 4,
            count,
            this.rows,
            this.cols,
            scratch + count * rowBytes,
          );
        else k.q8WeightRows(scratch, src.byteOffset + r * this.cols * 4, count, this.cols);
        this.packBlocks(scratch, r0 + r, count);
      }
    } finally {
      arena.free(scratch, scratchBytes);
    }
  }

  /** The q8Gemv call in progress (read by the split's pieces). */
  private call = { out: 0, ldo: 0, gmax: 0, gstride: 0, xw: 0, xd: 0, bias: 0, n: 0 };
  private split: SplitCall | null = null;

  /**
   * q8Gemv over every output row (see the kernel) for the n inputs quantised at xw/xd, split between threads by
   * quads (by 16 quads, whole 64-row groups, when it records group maxima).
   */
  gemv(
    out: number,
    ldo: number,
    gmax: number,
    gstride: number,
    xw: number,
    xd: number,
    bias: number,
    n: number,
  ): void {
    const arena = this.arena as WasmArena;
    const k = arena.kernels;
    if (!this.split) {
      const c = this.call;
      const [w, wd, IC] = [this.q.byteOffset, this.d.byteOffset, this.cols];
      this.split = new SplitCall(
        'q8Gemv',
        (a, from, to) => {
          a[0] = c.out;
          a[1] = c.ldo;
          a[2] = c.gmax;
          a[3] = c.gstride;
          a[4] = c.xw;
          a[5] = c.xd;
          a[6] = w;
          a[7] = wd;
          a[8] = c.bias;
          a[9] = c.n;
          a[10] = IC;
          a[11] = from;
          a[12] = to;
          a[13] = this.plain ? 1 : 0;
          return 14;
        },
        (from, to) =>
          k.q8Gemv(c.out, c.ldo, c.gmax, c.gstride, c.xw, c.xd, w, wd, c.bias, c.n, IC, from, to, this.plain),
      );
    }
    const c = this.call;
    c.out = out;
    c.ldo = ldo;
    c.gmax = gmax;
    c.gstride = gstride;
    c.xw = xw;
    c.xd = xd;
    c.bias = bias;
    c.n = n;
    const parallel = n * this.rows * this.cols >= PARALLEL_MIN_MACS;
    this.split.run(arena.memory, this.quads, gmax ? 16 : 1, parallel);
  }

  /** Where the packing lies, for another thread (see SharedQ8). */
  get shared(): SharedQ8 {
    return { q: this.q.byteOffset, d: this.d.byteOffset, wide: this.wide };
  }

  /** Whether every scale is finite. */
  get finite(): boolean {
    if (this.finiteCache === null) {
      let ok = true;
      for (let i = 0; i < this.d.length && ok; i++) ok = Number.isFinite(this.d[i]);
      this.finiteCache = ok;
    }
    return this.finiteCache;
  }

  /** Row r dequantised into out[off .. off + cols) (a token embedding lookup). */
  rowInto(r: number, out: Float32Array, off: number): void {
    const { NB, q, d } = this;
    const quad = r >> 2;
    const lane = r & 3;
    for (let b = 0; b < NB; b++) {
      const s = d[(quad * NB + b) * 4 + lane];
      const base = (quad * NB + b) * 128 + lane * 4;
      for (let i = 0; i < Q8_BLOCK; i++) out[off + b * Q8_BLOCK + i] = s * q[base + (i >> 2) * 16 + (i & 3)];
    }
  }

  /** The Q8_0 blocks again, as GGUF stores them (for export). */
  blocks(): Uint8Array {
    const { rows, NB, q, d } = this;
    const out = new Uint8Array(this.bytes);
    const view = new DataView(out.buffer);
    for (let r = 0; r < rows; r++) {
      const quad = r >> 2;
      const lane = r & 3;
      for (let b = 0; b < NB; b++) {
        const at = (r * NB + b) * Q8_BLOCK_BYTES;
        view.setUint16(at, f16Bits(d[(quad * NB + b) * 4 + lane]), true);
        const base = (quad * NB + b) * 128 + lane * 4;
        for (let i = 0; i < Q8_BLOCK; i++) view.setInt8(at + 2 + i, q[base + (i >> 2) * 16 + (i & 3)]);
      }
    }
    return out;
  }

  /**
   * The q8Gemv kernel in plain JS, the same operations in the same order (float32 rounding after each):
   * out[r·ldo + o] for the n inputs quantised into xq/xd and every output row.
   */
  gemvJs(
    out: Float32Array,
    ldo: number,
    xq: Int8Array,
    xd: Float32Array,
    bias: Float32Array | null,
    n: number,
  ): void {
    const { NB, q, d, rows, cols } = this;
    const f = Math.fround;
    for (let o = 0; o < rows; o++) {
      const quad = o >> 2;
      const lane = o & 3;
      for (let r = 0; r < n; r++) {
        let acc = 0;
        for (let b = 0; b < NB; b++) {
          const base = (quad * NB + b) * 128 + lane * 4;
          const xb = r * cols + b * Q8_BLOCK;
          let isum = 0;
          for (let i = 0; i < Q8_BLOCK; i++) isum += q[base + (i >> 2) * 16 + (i & 3)] * xq[xb + i];
          acc = f(acc + f(isum * f(d[(quad * NB + b) * 4 + lane] * xd[r * NB + b])));
        }
        out[r * ldo + o] = f(acc + (bias ? bias[o] : 0));
      }
    }
  }
}

/**
 * Quantises n rows of cols floats (x from xOff) as q8Quantize does: per block of 32, d = amax/127 rounded to f16
 * into xd, q = round-half-even(x · 127/amax) into xq.
 */
export function quantizeInputJs(
  xq: Int8Array,
  xd: Float32Array,
  x: Float32Array,
  xOff: number,
  n: number,
  cols: number,
): void {
  const NB = cols / Q8_BLOCK;
  const f = Math.fround;
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < NB; b++) {
      const at = xOff + r * cols + b * Q8_BLOCK;
      let amax = 0;
      for (let i = 0; i < Q8_BLOCK; i++) amax = Math.max(amax, Math.abs(x[at + i]));
      xd[r * NB + b] = roundToHalf(f(amax / 127));
      const id = amax !== 0 ? f(127 / amax) : 0;
      for (let i = 0; i < Q8_BLOCK; i++)
        xq[r * cols + b * Q8_BLOCK + i] = Math.max(-128, Math.min(127, roundEven(f(x[at + i] * id))));
    }
  }
}

/** Each arena's scratch for quantised inputs (int8 values, then float scales), grown as needed. */
const inputScratch = new WeakMap<WasmArena, { ptr: number; bytes: number }>();

/**
 * Byte offsets of room for n quantised rows of cols inputs: [xq (int8), xd (a float per 32), xw (the kernels'
 * expansions, 4·cols bytes a row)].
 */
export function inputBuffers(arena: WasmArena, n: number, cols: number): [number, number, number] {
  const qBytes = Math.ceil((n * cols) / 64) * 64;
  const dBytes = Math.ceil((n * cols) / 8 / 64) * 64; // one float per 32 inputs
  const bytes = qBytes + dBytes + 4 * n * cols;
  let s = inputScratch.get(arena);
  if (!s || s.bytes < bytes) {
    if (s) arena.free(s.ptr, s.bytes);
    s = { ptr: arena.alloc(bytes), bytes };
    inputScratch.set(arena, s);
  }
  return [s.ptr, s.ptr + qBytes, s.ptr + qBytes + dBytes];
}

/** A Conv1D layer in q8_0: the [out, in] matrix as Q8_0, the bias in float32. */
export class Q8Linear implements Linear {
  readonly format = 'q8_0';
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bytes: number;
  /** The pure-JS path's quantised inputs, grown as needed. */
  private jsInput: { xq: Int8Array; xd: Float32Array } | null = null;

  constructor(
    readonly matrix: Q8Matrix,
    readonly bias: Float32Array,
  ) {
    this.inFeatures = matrix.cols;
    this.outFeatures = matrix.rows;
    this.bytes = matrix.bytes + bias.byteLength;
    if (matrix.rows % 4 !== 0)
      throw new RangeError(`q8_0 linear: ${matrix.rows} outputs, not a multiple of 4`);
    if (matrix.arena && !matrix.arena.owns(bias))
      throw new Error('q8_0 linear: the bias must live in the arena');
  }

  rows(out: Float32Array, inp: Float32Array, n: number): void {
    const { matrix } = this;
    const arena = matrix.arena;
    const IC = this.inFeatures;
    if (!arena) {
      if (!this.jsInput || this.jsInput.xq.length < n * IC)
        this.jsInput = { xq: new Int8Array(n * IC), xd: new Float32Array((n * IC) / Q8_BLOCK) };
      const { xq, xd } = this.jsInput;
      quantizeInputJs(xq, xd, inp, 0, n, IC);
      matrix.gemvJs(out, this.outFeatures, xq, xd, this.bias, n);
      return;
    }
    const [xq, xd, xw] = inputBuffers(arena, n, IC);
    arena.kernels.q8Quantize(xq, xd, xw, inp.byteOffset, n, IC);
    matrix.gemv(out.byteOffset, this.outFeatures, 0, 0, xw, xd, this.bias.byteOffset, n);
  }

  matmul(out: Float32Array, inp: Float32Array, n: number): void {
    this.rows(out, inp, n);
  }
}
