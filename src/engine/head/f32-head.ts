// The f32 LM head packed for the SIMD kernels as [V/16][C][16], and the hot rows found while packing it.
import type { WasmArena } from '../wasm/runtime.js';
import type { HeadMatrix } from './head-matrix.js';
import { HOT_NORM_RATIO, type HotRows } from './hot-rows.js';

/** LM-head rows packed per WebAssembly block (see lmHead in wasm/assembly/kernels.ts). */
export const HEAD_BLOCK = 16;
/** Bytes of LM-head rows packHeadRows takes per call (see pack). */
const PACK_CHUNK_BYTES = 256 * 1024;

export class F32HeadMatrix implements HeadMatrix {
  readonly bytes: number;
  /** Blocks of 16 rows in the packed head. */
  readonly blocks: number;
  private finiteCache: boolean | null = null;

  /**
   * `lmHead` [V, C] row-major. With `arena`, the head is packed at `ptr` (packed here unless `packed` says it
   * already is, e.g. by the thread that shared it).
   */
  constructor(
    readonly lmHead: Float32Array,
    readonly vocabSize: number,
    readonly nEmbd: number,
    readonly arena: WasmArena | null,
    readonly ptr: number,
  ) {
    this.blocks = Math.ceil(vocabSize / HEAD_BLOCK);
    this.bytes = vocabSize * nEmbd * 4;
  }

  /** Bytes the packed head takes in the arena. */
  static packedBytes(V: number, C: number): number {
    return Math.ceil(V / HEAD_BLOCK) * HEAD_BLOCK * C * 4;
  }

  get finite(): boolean {
    if (this.finiteCache === null) {
      const w = this.lmHead;
      let ok = true;
      for (let i = 0; i < w.length && ok; i++) ok = Number.isFinite(w[i]);
      this.finiteCache = ok;
    }
    return this.finiteCache;
  }

  logitsWasm(out: number, gmax: number, h: number): void {
    (this.arena as WasmArena).kernels.lmHeadMax(out, gmax, h, this.ptr, this.blocks, this.nEmbd);
  }

  rowsWasm(vals: number, h: number, ids: number, n: number): void {
    (this.arena as WasmArena).kernels.headRows(vals, h, this.ptr, ids, n, this.nEmbd);
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
   * Packs the head into [blocks][C][16] at ptr (zero rows pad the last block) and finds the hot rows from the
   * row norms the packing computes on the way (null when there is no gap; undefined when not asked).
   */
  pack(findHot: boolean): { ids: Int32Array; coldMaxNorm: number } | null | undefined {
    const { vocabSize: V, nEmbd: C, lmHead: w } = this;
    const arena = this.arena as WasmArena;
    const inPlace = arena.owns(w);
    // ~256 KiB of rows per chunk (whole blocks), so a chunk is still in cache when its norms are summed.
    const chunk = Math.max(1, Math.floor(PACK_CHUNK_BYTES / (HEAD_BLOCK * C * 4))) * HEAD_BLOCK;
    const srcBytes = inPlace ? 0 : chunk * C * 4;
    // One piece of scratch: the chunk, V norms, hotRows' sort space, V ids and the largest cold norm.
    const normsAt = Math.ceil(srcBytes / 8) * 8;
    const workAt = normsAt + V * 8;
    const idsAt = workAt + 16 * V + 8192;
    const coldAt = idsAt + Math.ceil(V / 2) * 8;
    const bytes = coldAt + 8;
    const scratch = arena.alloc(bytes);
    try {
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
      if (!findHot) return undefined;
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

  /**
   * Packs the given rows as a head of their own ([ceil(n/16)][C][16], zero-padded) at ptr, gathered from this
   * packed head (the same floats, so the same logits bit for bit).
   */
  packSubset(found: { ids: Int32Array; coldMaxNorm: number }, ptr: number): HotRows {
    const arena = this.arena as WasmArena;
    const { ids } = found;
    const blocks = Math.ceil(ids.length / HEAD_BLOCK);
    const bytes = Math.max(4, ids.length * 4);
    const idsPtr = arena.alloc(bytes);
    try {
      arena.i32(idsPtr, ids.length).set(ids);
      arena.kernels.packHeadSubset(ptr, this.ptr, idsPtr, ids.length, this.nEmbd);
    } finally {
      arena.free(idsPtr, bytes);
    }
    return { ids, ptr, blocks, coldMaxNorm: found.coldMaxNorm };
  }
}
