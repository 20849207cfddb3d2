// The reference forward pass (llama2.c's forward()): token + position embedding, every block with its KV cache
// written, then the final layer norm of the rows the LM head reads. Products go through each layer's weight
// format (formats/), the other row operations through RowOps; nothing is allocated here.
import type { RowOps } from './row-ops.js';
import type { InferenceWeights } from './weights.js';

/** One sequence's KV cache: keys and values of every layer at every position, allocated once. */
export class KvCache {
  readonly keys: Float32Array[]; // L × [maxT, C]
  readonly values: Float32Array[]; // L × [maxT, C]
  /** Positions already in the cache. */
  position = 0;

  /** Room for `maxT` positions (at most the model's context). */
  constructor(
    weights: InferenceWeights,
    readonly maxT: number,
    alloc: (floats: number) => Float32Array,
  ) {
    const { nLayer: L, nEmbd: C } = weights.config;
    this.keys = Array.from({ length: L }, () => alloc(maxT * C));
    this.values = Array.from({ length: L }, () => alloc(maxT * C));
  }
}

/** A pass's scratch for up to `rows` rows, allocated once; each row says which cache and position it is. */
export class RunBuffers {
  readonly x: Float32Array; // [rows, C] residual stream
  readonly xn: Float32Array; // [rows, C] layer-norm output
  readonly qkv: Float32Array; // [rows, 3C]
  readonly atty: Float32Array; // [rows, C] attention output
  readonly proj: Float32Array; // [rows, C]
  readonly fch: Float32Array; // [rows, 4C]
  readonly fchGelu: Float32Array; // [rows, 4C]
  /** [rows, C]: the final-normed rows the LM head reads. */
  readonly h: Float32Array;
  /** The cache and position of each row. */
  readonly caches: KvCache[];
  readonly positions: Int32Array;

  constructor(
    weights: InferenceWeights,
    readonly rows: number,
    alloc: (floats: number) => Float32Array,
  ) {
    const C = weights.config.nEmbd;
    this.x = alloc(rows * C);
    this.xn = alloc(rows * C);
    this.qkv = alloc(rows * 3 * C);
    this.atty = alloc(rows * C);
    this.proj = alloc(rows * C);
    this.fch = alloc(rows * 4 * C);
    this.fchGelu = alloc(rows * 4 * C);
    this.h = alloc(rows * C);
    this.caches = new Array(rows);
    this.positions = new Int32Array(rows);
  }
}

/**
 * Runs tokens ids[0..n) through the model, row r at b.positions[r] of b.caches[r] (a prompt: one cache,
 * consecutive positions; a batched step: one row per sequence), writing every layer's keys and values into
 * the caches. Then b.h gets the final layer norm of the last row (`head` 'last', into row 0) or of every row
 * ('all'). `prefill` (one cache, consecutive positions) picks the products' blocked method; decode rows give
 * each row the same bits alone or together.
 */
export function forward(
  w: InferenceWeights,
  ops: RowOps,
  b: RunBuffers,
  ids: ArrayLike<number>,
  n: number,
  prefill: boolean,
  head: 'last' | 'all',
): void {
  const { vocabSize: V, nEmbd: C, nHead: NH, layerNormEpsilon: eps } = w.config;
  const hs = C / NH;
  const { x, xn, qkv, atty, proj, fch, fchGelu, caches, positions } = b;
  const wpe = w.wpe;
  for (let r = 0; r < n; r++) {
    const id = ids[r];
    if (!(Number.isInteger(id) && id >= 0 && id < V))
      throw new RangeError(`token id ${id} is outside [0, ${V})`);
    w.embed(id, x, r * C);
    const p = positions[r] * C;
    for (let c = 0; c < C; c++) x[r * C + c] += wpe[p + c];
  }
  for (let l = 0; l < w.layers.length; l++) {
    const layer = w.layers[l];
    ops.layerNorm(xn, x, layer.ln1w, layer.ln1b, n, C, eps);
    if (prefill) layer.qkv.matmul(qkv, xn, n);
    else layer.qkv.rows(qkv, xn, n);
    for (let r = 0; r < n; r++) {
      const keys = caches[r].keys[l];
      const values = caches[r].values[l];
      const src = r * 3 * C;
      const dst = positions[r] * C;
      for (let c = 0; c < C; c++) {
        keys[dst + c] = qkv[src + C + c];
        values[dst + c] = qkv[src + 2 * C + c];
      }
    }
    if (prefill) {
      // A prompt: every row in one cache at consecutive positions.
      ops.attendPrompt(atty, qkv, caches[0].keys[l], caches[0].values[l], positions[0], n, NH, hs);
    } else {
      for (let r = 0; r < n; r++) {
        const cache = caches[r];
        ops.attend(atty, r * C, qkv, r * 3 * C, cache.keys[l], cache.values[l], positions[r] + 1, NH, hs);
      }
    }
    if (prefill) layer.attnProj.matmul(proj, atty, n);
    else layer.attnProj.rows(proj, atty, n);
    ops.add(x, proj, n * C);
    ops.layerNorm(xn, x, layer.ln2w, layer.ln2b, n, C, eps);
    if (prefill) layer.fc.matmul(fch, xn, n);
    else layer.fc.rows(fch, xn, n);
    ops.gelu(fchGelu, fch, n * 4 * C);
    if (prefill) layer.fcProj.matmul(proj, fchGelu, n);
    else layer.fcProj.rows(proj, fchGelu, n);
    ops.add(x, proj, n * C);
  }
  const { lnfw, lnfb } = w;
  if (head === 'all') {
    ops.layerNorm(b.h, x, lnfw, lnfb, n, C, eps);
    return;
  }
  // Only the last row needs logits: normalise it alone (into row 0 of h).
  const last = (n - 1) * C;
  for (let c = 0; c < C; c++) xn[c] = x[last + c];
  ops.layerNorm(b.h, xn, lnfw, lnfb, 1, C, eps);
}
