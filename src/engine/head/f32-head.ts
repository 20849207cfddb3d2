// The f32 LM head as the kernels read it: packed as [V/16][C][16] for narrow models (sixteen logits per pass
// over the input), row-major in place for wide ones (no second copy of the embedding); and its hot rows.
import { firstNonFinite } from '../finite.js';
import { PARALLEL_MIN_MACS } from '../formats/f32.js';
import type { WasmArena } from '../wasm/runtime.js';
import { SplitCall } from '../wasm/threads.js';
import type { HeadMatrix } from './head-matrix.js';
import { HOT_NORM_RATIO, type HotRows } from './hot-rows.js';

/** LM-head rows packed per WebAssembly block (see lmHead in wasm/assembly/kernels.ts). */
export const HEAD_BLOCK = 16;
/**
 * Widest model whose head is packed: narrower rows are too short for a row-by-row dot product, while a wide
 * model's rows stream well in place and a packed copy would cost a second embedding's memory.
 */
export const PACKED_HEAD_MAX_EMBD = 128;
/** Bytes of LM-head rows packHeadRows takes per call (see pack). */
const PACK_CHUNK_BYTES = 256 * 1024;

export class F32HeadMatrix implements HeadMatrix {
  readonly bytes: number;
  /** Blocks of 16 rows in the packed head (0 when the head is read row-major in place). */
  readonly blocks: number;
  /** Where the kernels read the head: the packed copy, or lmHead itself. */
  readonly ptr: number;
  private finiteCache: boolean | null = null;
  /** The row-major head's call in progress, split between threads by 64-row groups. */
  private call = { out: 0, gmax: 0, h: 0 };
  private split: SplitCall | null = null;

  /**
   * `lmHead` [V, C] row-major (in the arena's memory when `arena` is set). A narrow model's head is packed at
   * `packedPtr` (see packedBytes; by pack(), unless another thread already did).
   */
  constructor(
    readonly lmHead: Float32Array,
    readonly vocabSize: number,
    readonly nEmbd: number,
    readonly arena: WasmArena | null,
    packedPtr: number,
  ) {
    const packed = arena !== null && F32HeadMatrix.packs(nEmbd);
    this.blocks = packed ? Math.ceil(vocabSize / HEAD_BLOCK) : 0;
    this.ptr = packed ? packedPtr : lmHead.byteOffset;
    this.bytes = vocabSize * nEmbd * 4;
  }

  /** Whether a head of width C is packed. */
  static packs(C: number): boolean {
    return C <= PACKED_HEAD_MAX_EMBD;
  }

  /** Bytes a packed head takes in the arena (0 for a head read in place). */
  static packedBytes(V: number, C: number): number {
    return F32HeadMatrix.packs(C) ? Math.ceil(V / HEAD_BLOCK) * HEAD_BLOCK * C * 4 : 0;
  }

  get packed(): boolean {
    return this.blocks > 0;
  }

  get finite(): boolean {
    if (this.finiteCache === null) {
      this.finiteCache = firstNonFinite(this.lmHead) < 0;
    }
    return this.finiteCache;
  }

  logitsWasm(out: number, gmax: number, h: number): void {
    const k = (this.arena as WasmArena).kernels;
    if (this.packed) {
      k.lmHeadMax(out, gmax, h, this.ptr, this.blocks, this.nEmbd);
      return;
    }
    const { ptr: w, nEmbd: C, vocabSize: V } = this;
    const c = this.call;
    this.split ??= new SplitCall(
      'headRowMajor',
      (a, from, to) => {
        a[0] = c.out;
        a[1] = c.gmax;
        a[2] = c.h;
        a[3] = w;
        a[4] = C;
        a[5] = from;
        a[6] = to;
        return 7;
      },
      (from, to) => k.headRowMajor(c.out, c.gmax, c.h, w, C, from, to),
    );
    c.out = out;
    c.gmax = gmax;
    c.h = h;
    this.split.run((this.arena as WasmArena).memory, V, 64, V * C >= PARALLEL_MIN_MACS);
  }

  rowsWasm(vals: number, h: number, ids: number, n: number): void {
    const k = (this.arena as WasmArena).kernels;
    if (this.packed) k.headRows(vals, h, this.ptr, ids, n, this.nEmbd);
    else k.headRowMajorAt(vals, h, this.ptr, ids, n, this.nEmbd);
  }

  /** The hot rows' logits of the row at h into out: the bits the full head gives them. */
  hotLogits(out: number, h: number, hot: HotRows): void {
    if (this.packed) (this.arena as WasmArena).kernels.lmHead(out, h, hot.ptr, hot.blocks, this.nEmbd);
    else this.rowsWasm(out, h, hot.idsPtr, hot.ids.length);
  }

  logitsJs(out: Float32Array, h: Float32Array, hOff: number): void {
    const { vocabSize: V, nEmbd: C, lmHead } = this;
    for (let v = 0; v < V; v++) {
      const row = v * C;
      let s = 0;
      for (let c = 0; c < C; c++) s += h[hOff + c] * lmHead[row + c];
      out[v] = s;
    }
  }

  /**
   * Packs a narrow head into [blocks][C][16] (zero rows pad the last block), and finds the hot rows from the
   * row norms (computed on the way when packing): null when there is no gap.
   */
  prepare(): { ids: Int32Array; coldMaxNorm: number } | null {
    const { vocabSize: V, nEmbd: C, lmHead: w } = this;
    const arena = this.arena as WasmArena;
    const inPlace = arena.owns(w);
    // ~256 KiB of rows per chunk (whole blocks), so a chunk is still in cache when its norms are summed.
    const chunk = Math.max(1, Math.floor(PACK_CHUNK_BYTES / (HEAD_BLOCK * C * 4))) * HEAD_BLOCK;
    const srcBytes = inPlace || !this.packed ? 0 : chunk * C * 4;
    // One piece of scratch: the chunk, V norms, hotRows' sort space, V ids and the largest cold norm.
    const normsAt = Math.ceil(srcBytes / 8) * 8;
    const workAt = normsAt + V * 8;
    const idsAt = workAt + 16 * V + 8192;
    const coldAt = idsAt + Math.ceil(V / 2) * 8;
    const bytes = coldAt + 8;
    const scratch = arena.alloc(bytes);
    try {
      if (!this.packed) {
        // In pieces: short calls let V8 switch to the kernel's optimised code after the first few.
        for (let v = 0; v < V; v += chunk)
          arena.kernels.rowNorms(
            scratch + normsAt + v * 8,
            w.byteOffset + v * C * 4,
            Math.min(chunk, V - v),
            C,
          );
      } else {
        for (let r0 = 0; r0 < V; r0 += chunk) {
          const rows = Math.min(chunk, V - r0);
          let src = w.byteOffset + r0 * C * 4;
          if (!inPlace) {
            arena.f32(scratch, rows * C).set(w.subarray(r0 * C, (r0 + rows) * C));
            src = scratch;
          }
          // Block r0 / 16 starts r0 · C floats into the packed head; the last chunk zero-fills its partial block.
          arena.kernels.packHeadRows(this.ptr + r0 * C * 4, src, rows, C, scratch + normsAt + r0 * 8);
        }
      }
      const count = arena.kernels.hotRows(
        scratch + normsAt,
        V,
        HOT_NORM_RATIO,
        scratch + idsAt,
        scratch + coldAt,
        scratch + workAt,
      );
      if (count < 0) return null;
      return {
        ids: arena.i32(scratch + idsAt, count).slice(),
        coldMaxNorm: arena.f64(scratch + coldAt, 1)[0],
      };
    } finally {
      arena.free(scratch, bytes);
    }
  }

  /** Bytes hotRowsAt needs for `count` hot rows. */
  hotBytes(count: number): number {
    const packed = this.packed ? Math.ceil(count / HEAD_BLOCK) * HEAD_BLOCK * this.nEmbd * 4 : 0;
    return Math.ceil((count * 4) / 64) * 64 + packed;
  }

  /**
   * The hot rows placed at ptr (hotBytes): their ids, and for a packed head the rows gathered into a head of
   * their own ([ceil(n/16)][C][16], zero-padded) from the packed head, so the same floats give the same logits.
   */
  hotRowsAt(found: { ids: Int32Array; coldMaxNorm: number }, ptr: number): HotRows {
    const arena = this.arena as WasmArena;
    const { ids } = found;
    const idsPtr = ptr;
    arena.i32(idsPtr, ids.length).set(ids);
    const packedPtr = ptr + Math.ceil((ids.length * 4) / 64) * 64;
    const blocks = this.packed ? Math.ceil(ids.length / HEAD_BLOCK) : 0;
    if (this.packed) arena.kernels.packHeadSubset(packedPtr, this.ptr, idsPtr, ids.length, this.nEmbd);
    return { ids, idsPtr, ptr: this.packed ? packedPtr : 0, blocks, coldMaxNorm: found.coldMaxNorm };
  }
}
