// WebAssembly SIMD kernels in AssemblyScript (compiled by scripts/build-wasm.ts): LM head, top-k, argmax.
// Every argument is a byte offset into the one shared linear memory that the JS side lays out.

/** Rows of the LM head packed together so one f32x4 accumulator holds four logits. */
const BLOCK: i32 = 16;

/**
 * out[v] = Σ_c x[c]·W[v, c] for a head packed as [V/16][C][16] (rows grouped by 16, channel-major inside).
 * Four accumulators of four lanes hold the 16 logits of one block; the channel loop runs sequentially.
 */
export function lmHead(out: usize, x: usize, w: usize, blocks: i32, C: i32): void {
  let p = w;
  let o = out;
  for (let b = 0; b < blocks; b++) {
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    for (let c = 0; c < C; c++) {
      const xs = v128.load32_splat(x + ((<usize>c) << 2));
      a0 = f32x4.add(a0, f32x4.mul(xs, v128.load(p)));
      a1 = f32x4.add(a1, f32x4.mul(xs, v128.load(p, 16)));
      a2 = f32x4.add(a2, f32x4.mul(xs, v128.load(p, 32)));
      a3 = f32x4.add(a3, f32x4.mul(xs, v128.load(p, 48)));
      p += BLOCK << 2;
    }
    v128.store(o, a0);
    v128.store(o, a1, 16);
    v128.store(o, a2, 32);
    v128.store(o, a3, 48);
    o += BLOCK << 2;
  }
}

function weaker(ids: usize, vals: usize, a: i32, b: i32): bool {
  const va = load<f32>(vals + ((<usize>a) << 2));
  const vb = load<f32>(vals + ((<usize>b) << 2));
  return va < vb || (va === vb && load<i32>(ids + ((<usize>a) << 2)) > load<i32>(ids + ((<usize>b) << 2)));
}

function swap(ids: usize, vals: usize, a: i32, b: i32): void {
  const pa = (<usize>a) << 2;
  const pb = (<usize>b) << 2;
  const ti = load<i32>(ids + pa);
  store<i32>(ids + pa, load<i32>(ids + pb));
  store<i32>(ids + pb, ti);
  const tv = load<f32>(vals + pa);
  store<f32>(vals + pa, load<f32>(vals + pb));
  store<f32>(vals + pb, tv);
}

function siftDown(ids: usize, vals: usize, start: i32, n: i32): void {
  let i = start;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    if (l < n && weaker(ids, vals, l, m)) m = l;
    if (r < n && weaker(ids, vals, r, m)) m = r;
    if (m === i) return;
    swap(ids, vals, i, m);
    i = m;
  }
}

function offer(scores: usize, ids: usize, vals: usize, v: i32, k: i32): void {
  const s = load<f32>(scores + ((<usize>v) << 2));
  if (s > load<f32>(vals)) {
    store<i32>(ids, v);
    store<f32>(vals, s);
    siftDown(ids, vals, 0, k);
  }
}

/**
 * The k (< V) highest scores, ties to the lower id, sorted descending into ids[k] (i32) and vals[k] (f32).
 * A bounded min-heap as in the JS sampler; four scores at a time are compared against the heap's
 * weakest entry with SIMD, so the heap is only touched when a lane beats it.
 */
export function topK(scores: usize, V: i32, k: i32, ids: usize, vals: usize): void {
  for (let size = 0; size < k; size++) {
    store<i32>(ids + ((<usize>size) << 2), size);
    store<f32>(vals + ((<usize>size) << 2), load<f32>(scores + ((<usize>size) << 2)));
    let i = size;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!weaker(ids, vals, i, parent)) break;
      swap(ids, vals, i, parent);
      i = parent;
    }
  }
  let v = k;
  for (; v < V && (v & 3) !== 0; v++) offer(scores, ids, vals, v, k);
  for (; v + 4 <= V; v += 4) {
    const chunk = v128.load(scores + ((<usize>v) << 2));
    if (v128.any_true(f32x4.gt(chunk, v128.load32_splat(vals)))) {
      offer(scores, ids, vals, v, k);
      offer(scores, ids, vals, v + 1, k);
      offer(scores, ids, vals, v + 2, k);
      offer(scores, ids, vals, v + 3, k);
    }
  }
  for (; v < V; v++) offer(scores, ids, vals, v, k);
  for (let n = k - 1; n > 0; n--) {
    swap(ids, vals, 0, n);
    siftDown(ids, vals, 0, n);
  }
}

/**
 * Index of the largest score, the lowest index on ties; NaN never wins and a NaN at index 0 wins outright
 * (exactly the JS `>` scan that starts from index 0). Each lane tracks its own best, then lanes are merged.
 */
export function argmax(scores: usize, V: i32): i32 {
  const first = load<f32>(scores);
  if (Number.isNaN(<f64>first)) return 0;
  let bestV = f32x4.splat(-Infinity);
  let bestI = i32x4.splat(-1);
  let idx = i32x4(0, 1, 2, 3);
  const four = i32x4.splat(4);
  let v = 0;
  for (; v + 4 <= V; v += 4) {
    const chunk = v128.load(scores + ((<usize>v) << 2));
    const gt = f32x4.gt(chunk, bestV);
    bestV = v128.bitselect(chunk, bestV, gt);
    bestI = v128.bitselect(idx, bestI, gt);
    idx = i32x4.add(idx, four);
  }
  let best = 0;
  let bestValue = first;
  for (let lane = 0; lane < 4; lane++) {
    const i =
      lane === 0
        ? i32x4.extract_lane(bestI, 0)
        : lane === 1
          ? i32x4.extract_lane(bestI, 1)
          : lane === 2
            ? i32x4.extract_lane(bestI, 2)
            : i32x4.extract_lane(bestI, 3);
    if (i < 0) continue;
    const s = load<f32>(scores + ((<usize>i) << 2));
    if (s > bestValue || (s === bestValue && i < best)) {
      bestValue = s;
      best = i;
    }
  }
  for (; v < V; v++) {
    const s = load<f32>(scores + ((<usize>v) << 2));
    if (s > bestValue) {
      bestValue = s;
      best = v;
    }
  }
  return best;
}

/** Depth of one k-block of gemm: a 4-row strip of A and a k-block of B stay cache-resident across it. */
const KC: i32 = 256;
/** Width of one column block of B (KC × NC floats = 128 KiB, L2-resident). */
const NC: i32 = 128;

/**
 * C[M×N] (+)= A·B for row-major B [K×N] (row stride ldb) and C (row stride ldc). A's element (i, k) is at
 * A + 4·(i·sAi + k·sAk), so A may be row-major (sAi = K, sAk = 1) or transposed (sAi = 1, sAk = M).
 * Blocked over k and over columns; the micro-kernel keeps a 4×8 tile of C in eight f32x4 registers.
 * With `accumulate` false C is overwritten.
 */
export function gemm(
  c: usize,
  a: usize,
  sAi: i32,
  sAk: i32,
  b: usize,
  ldb: i32,
  M: i32,
  N: i32,
  K: i32,
  ldc: i32,
  accumulate: bool,
): void {
  if (!accumulate) {
    for (let i = 0; i < M; i++) memory.fill(c + ((<usize>i * <usize>ldc) << 2), 0, (<usize>N) << 2);
  }
  const N8 = N & ~7;
  const M4 = M & ~3;
  for (let k0 = 0; k0 < K; k0 += KC) {
    const k1 = min(K, k0 + KC);
    for (let j0 = 0; j0 < N8; j0 += NC) {
      const j1 = min(N8, j0 + NC);
      for (let i = 0; i < M4; i += 4) {
        for (let j = j0; j < j1; j += 8) {
          const c0 = c + ((<usize>i * <usize>ldc + <usize>j) << 2);
          const c1 = c0 + ((<usize>ldc) << 2);
          const c2 = c1 + ((<usize>ldc) << 2);
          const c3 = c2 + ((<usize>ldc) << 2);
          let x0 = v128.load(c0);
          let y0 = v128.load(c0, 16);
          let x1 = v128.load(c1);
          let y1 = v128.load(c1, 16);
          let x2 = v128.load(c2);
          let y2 = v128.load(c2, 16);
          let x3 = v128.load(c3);
          let y3 = v128.load(c3, 16);
          let pa = a + ((<usize>i * <usize>sAi + <usize>k0 * <usize>sAk) << 2);
          const stepA = (<usize>sAk) << 2;
          const offA = (<usize>sAi) << 2;
          let pb = b + ((<usize>k0 * <usize>ldb + <usize>j) << 2);
          const stepB = (<usize>ldb) << 2;
          for (let k = k0; k < k1; k++) {
            const b0 = v128.load(pb);
            const b1 = v128.load(pb, 16);
            const a0 = v128.load32_splat(pa);
            x0 = f32x4.add(x0, f32x4.mul(a0, b0));
            y0 = f32x4.add(y0, f32x4.mul(a0, b1));
            const a1 = v128.load32_splat(pa + offA);
            x1 = f32x4.add(x1, f32x4.mul(a1, b0));
            y1 = f32x4.add(y1, f32x4.mul(a1, b1));
            const a2 = v128.load32_splat(pa + 2 * offA);
            x2 = f32x4.add(x2, f32x4.mul(a2, b0));
            y2 = f32x4.add(y2, f32x4.mul(a2, b1));
            const a3 = v128.load32_splat(pa + 3 * offA);
            x3 = f32x4.add(x3, f32x4.mul(a3, b0));
            y3 = f32x4.add(y3, f32x4.mul(a3, b1));
            pa += stepA;
            pb += stepB;
          }
          v128.store(c0, x0);
          v128.store(c0, y0, 16);
          v128.store(c1, x1);
          v128.store(c1, y1, 16);
          v128.store(c2, x2);
          v128.store(c2, y2, 16);
          v128.store(c3, x3);
          v128.store(c3, y3, 16);
        }
      }
    }
    // Edges: the last M mod 4 rows over the full width, and the last N mod 8 columns of the other rows.
    for (let i = 0; i < M; i++) {
      const jStart = i < M4 ? N8 : 0;
      for (let j = jStart; j < N; j++) {
        let s: f32 = 0;
        for (let k = k0; k < k1; k++) {
          s +=
            load<f32>(a + ((<usize>i * <usize>sAi + <usize>k * <usize>sAk) << 2)) *
            load<f32>(b + ((<usize>k * <usize>ldb + <usize>j) << 2));
        }
        const pc = c + ((<usize>i * <usize>ldc + <usize>j) << 2);
        store<f32>(pc, load<f32>(pc) + s);
      }
    }
  }
}

/** dst[cols×rows] = srcᵀ for row-major src [rows×cols], in 16×16 tiles. */
export function transpose(dst: usize, src: usize, rows: i32, cols: i32): void {
  for (let r0 = 0; r0 < rows; r0 += 16) {
    const r1 = min(rows, r0 + 16);
    for (let c0 = 0; c0 < cols; c0 += 16) {
      const c1 = min(cols, c0 + 16);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) {
          store<f32>(
            dst + ((<usize>c * <usize>rows + <usize>r) << 2),
            load<f32>(src + ((<usize>r * <usize>cols + <usize>c) << 2)),
          );
        }
      }
    }
  }
}
