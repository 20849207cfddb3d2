// Top-k without scanning all V scores: each 64-row group's maximum, recorded by the head kernels, bounds the cut.
import type { WasmArena } from '../wasm/runtime.js';

/** Rows per group of logits whose maximum the head kernels record (GROUP in the kernels). */
export const TOP_GROUP = 64;

/** A session's buffers for the search, in WebAssembly memory (byte offsets and views); one row at a time. */
export class GroupTop {
  readonly groups: number;
  readonly candPtr: number;
  readonly cand: Int32Array;
  readonly candValsPtr: number;
  private readonly topIdsPtr: number;
  private readonly topIds: Int32Array;
  private readonly topValsPtr: number;
  private readonly topVals: Float32Array;
  /** Candidates compared by the last search. */
  lastCandidates = 0;

  constructor(
    private readonly arena: WasmArena,
    readonly vocabSize: number,
    owner: object,
  ) {
    const groups = Math.ceil(vocabSize / TOP_GROUP);
    const rows = groups * TOP_GROUP;
    const alloc = (bytes: number): number => {
      const ptr = arena.alloc(bytes);
      arena.freeWith(owner, ptr, bytes);
      return ptr;
    };
    this.groups = groups;
    this.candPtr = alloc(rows * 4);
    this.cand = arena.i32(this.candPtr, rows);
    this.candValsPtr = alloc(rows * 4);
    this.topIdsPtr = alloc(groups * 4);
    this.topIds = arena.i32(this.topIdsPtr, groups);
    this.topValsPtr = alloc(groups * 4);
    this.topVals = arena.f32(this.topValsPtr, groups);
  }

  /**
   * The padding rows of the last 64-row group (ids ≥ V) score 0 in the kernels: that group's maximum is set from
   * its real rows, so padding never raises the cut (it would only cost a fallback, never a wrong token).
   */
  fixLastGroup(scores: Float32Array, gmax: Float32Array): void {
    const V = this.vocabSize;
    const last = (this.groups - 1) * TOP_GROUP;
    if (last + TOP_GROUP <= V) return;
    let m = Number.NEGATIVE_INFINITY;
    for (let v = last; v < V; v++) if (scores[v] > m) m = scores[v];
    gmax[this.groups - 1] = m;
  }

  /** The k-th largest group maximum (1 ≤ k ≤ groups). */
  kthGroupMax(gmaxPtr: number, k: number): number {
    return this.arena.kernels.kthLargest(gmaxPtr, this.groups, k, this.candValsPtr);
  }

  /** Collects every row with score ≥ cut (ids into cand, scores at candValsPtr); returns how many. */
  collect(scoresPtr: number, gmaxPtr: number, cut: number): number {
    return this.arena.kernels.collectAtLeast(
      scoresPtr,
      gmaxPtr,
      this.groups,
      this.vocabSize,
      cut,
      this.candPtr,
      this.candValsPtr,
    );
  }

  /**
   * The k largest logits from a full row of scores and its group maxima: with T the k-th largest maximum, k groups
   * hold a logit ≥ T, so the logits ≥ T number at least k and hold the k largest, ties included. False when
   * fewer than k were found (NaN scores).
   */
  fromGroups(scoresPtr: number, gmaxPtr: number, k: number, ids: Int32Array, values: Float64Array): boolean {
    const n = this.collect(scoresPtr, gmaxPtr, this.kthGroupMax(gmaxPtr, k));
    if (n < k) return false;
    this.take(this.candValsPtr, n, k, ids, values);
    return true;
  }

  /** The k largest of n candidates whose values lie at valsPtr (ids in cand), sorted, into ids/values. */
  take(valsPtr: number, n: number, k: number, ids: Int32Array, values: Float64Array): void {
    this.arena.kernels.topK(valsPtr, n, k, this.topIdsPtr, this.topValsPtr);
    for (let i = 0; i < k; i++) {
      ids[i] = this.cand[this.topIds[i]];
      values[i] = this.topVals[i];
    }
    this.lastCandidates = n;
  }
}
