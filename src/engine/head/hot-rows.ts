// Hot rows: a model trained on part of the vocabulary scores those rows first and the rest only when needed.
import type { WasmArena } from '../wasm/runtime.js';
import type { F32HeadMatrix } from './f32-head.js';
import type { FullHead } from './full.js';
import type { LmHead } from './lm-head.js';

/** A hot set must be this much larger in norm than every row it leaves out. */
export const HOT_NORM_RATIO = 3;

/**
 * The few LM-head rows that carry a model trained on part of the vocabulary (restricted-softmax training
 * leaves every other row near its small initialisation), packed like the full head, with the largest norm
 * among the other rows: ||h||·coldMaxNorm bounds every logit the hot rows leave out (Cauchy–Schwarz).
 */
export interface HotRows {
  /** Vocabulary ids of the hot rows, ascending (so ties still go to the lower id). */
  ids: Int32Array;
  /** The same ids in WebAssembly memory. */
  idsPtr: number;
  /** A packed head's hot rows packed as a head of their own ([blocks][C][16]); 0 for a row-major head. */
  ptr: number;
  blocks: number;
  coldMaxNorm: number;
}

/** The Euclidean norm of each of the V rows of [V, C] `lmHead`. */
function headRowNorms(lmHead: Float32Array, V: number, C: number): Float64Array {
  const norms = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    let sum = 0;
    const row = v * C;
    for (let c = 0; c < C; c++) sum += lmHead[row + c] * lmHead[row + c];
    norms[v] = Math.sqrt(sum);
  }
  return norms;
}

/**
 * Finds the hot rows: the widest gap (ratio ≥ HOT_NORM_RATIO) in the sorted row norms that keeps at most
 * half the vocabulary above it. Null when the rows show no such gap (a model trained on every token).
 * (The hotRows kernel computes the same from the norms packHeadRows writes.)
 */
export function findHotRows(
  lmHead: Float32Array,
  V: number,
  C: number,
  rowNorms?: Float64Array,
): { ids: Int32Array; coldMaxNorm: number } | null {
  const norms = rowNorms ?? headRowNorms(lmHead, V, C);
  const sorted = Float64Array.from(norms).sort().reverse();
  let best = -1;
  let bestRatio = HOT_NORM_RATIO;
  for (let i = 0; i + 1 < V && i < V >> 1; i++) {
    const ratio = sorted[i + 1] > 0 ? sorted[i] / sorted[i + 1] : sorted[i] > 0 ? Infinity : 0;
    if (ratio >= bestRatio) {
      bestRatio = ratio;
      best = i;
    }
  }
  if (best < 0) return null;
  const threshold = sorted[best];
  let count = 0;
  for (let v = 0; v < V; v++) if (norms[v] >= threshold) count++;
  const ids = new Int32Array(count);
  let coldMaxNorm = 0;
  for (let v = 0, j = 0; v < V; v++) {
    if (norms[v] >= threshold) ids[j++] = v;
    else if (norms[v] > coldMaxNorm) coldMaxNorm = norms[v];
  }
  return { ids, coldMaxNorm };
}

/**
 * Scores the hot rows of every row first (the same kernel over rows packed the same way: each hot logit is
 * bit-identical to the full head's); top-k is decided from them when the k-th kept logit clears the bound on
 * every cold logit (then the kept set and its values are what a full scan keeps), else by the full head.
 */
export class HotRowsHead implements LmHead {
  readonly name = 'hot-rows';
  private readonly C: number;
  private readonly matrix: F32HeadMatrix;
  private readonly stride: number;
  private readonly hotPtr: number;
  private readonly rowHot: Float32Array[];
  private readonly bounds: Float64Array;
  private h: Float32Array | null = null;
  private decided = 0;
  lastSource: LmHead['name'] | 'none' = 'none';

  constructor(
    private readonly arena: WasmArena,
    readonly hot: HotRows,
    private readonly full: FullHead,
    owner: object,
  ) {
    this.C = full.matrix.nEmbd;
    this.matrix = full.matrix as F32HeadMatrix;
    this.stride = Math.ceil(hot.ids.length / 16) * 16;
    const capacity = full.capacity;
    const bytes = capacity * this.stride * 4;
    this.hotPtr = arena.alloc(bytes);
    arena.freeWith(owner, this.hotPtr, bytes);
    this.rowHot = [];
    for (let r = 0; r < capacity; r++)
      this.rowHot.push(arena.f32(this.hotPtr + r * this.stride * 4, hot.ids.length));
    this.bounds = new Float64Array(capacity);
  }

  get topLimit(): number {
    return this.full.topLimit;
  }

  get lastCandidates(): number {
    return this.decided;
  }

  score(h: Float32Array, n: number): void {
    this.full.score(h, n);
    this.h = h;
    const { C, hot } = this;
    for (let r = 0; r < n; r++) {
      this.matrix.hotLogits(this.rowHot[r].byteOffset, h.byteOffset + r * C * 4, hot);
      let sum = 0;
      for (let c = r * C; c < (r + 1) * C; c++) sum += h[c] * h[c];
      // Widened by a relative 1e-4 so float rounding in the dot products cannot cross it.
      this.bounds[r] = Math.sqrt(sum) * hot.coldMaxNorm * (1 + 1e-4) + 1e-30;
    }
  }

  /** Row r's hot logits, indexed like hot.ids (for tests). */
  hotLogits(r: number): Float32Array {
    return this.rowHot[r];
  }

  /** An upper bound on every logit outside the hot rows of row r. */
  coldBound(r: number): number {
    return this.bounds[r];
  }

  top(r: number, k: number, ids: Int32Array, values: Float64Array): boolean {
    const H = this.hot.ids.length;
    if (this.h && k >= 1 && k < H) {
      this.arena.topK(this.rowHot[r], k, ids, values);
      if (values[k - 1] > this.bounds[r]) {
        for (let i = 0; i < k; i++) ids[i] = this.hot.ids[ids[i]];
        this.decided = H;
        this.lastSource = 'hot-rows';
        return true;
      }
    }
    const ok = this.full.top(r, k, ids, values);
    this.decided = this.full.lastCandidates;
    this.lastSource = this.full.lastSource;
    return ok;
  }

  logits(r: number): Float32Array {
    return this.full.logits(r);
  }
}
