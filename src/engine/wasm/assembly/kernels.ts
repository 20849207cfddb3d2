// WebAssembly SIMD kernels in AssemblyScript (compiled by scripts/build-wasm.ts): LM head, top-k, argmax.
// Every argument is a byte offset into the one shared linear memory that the JS side lays out.

/** Rows of the LM head packed together so one f32x4 accumulator holds four logits. */
const BLOCK: i32 = 16;

/**
 * acc + a·b per lane. Built twice (scripts/build-wasm.ts): with relaxed SIMD this is one fused multiply-add
 * (f32x4.relaxed_madd), without it a multiply then an add. The runtime loads the relaxed build where the engine
 * validates it (Node 22+; Node 20 with --experimental-wasm-relaxed-simd).
 */
function madd(a: v128, b: v128, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, acc);
  return f32x4.add(acc, f32x4.mul(a, b));
}

/** The largest of a vector's four lanes (NaN lanes are passed over, as pmax does). */
function laneMax(m: v128): f32 {
  const p = f32x4.pmax(m, v128.shuffle<f32>(m, m, 2, 3, 0, 1));
  return max(f32x4.extract_lane(p, 0), f32x4.extract_lane(p, 1));
}

/**
 * out[v] = Σ_c x[c]·W[v, c] for a head packed as [V/16][C][16] (rows grouped by 16, channel-major inside).
 * Four accumulators of four lanes hold the 16 logits of one block; the channel loop runs sequentially.
 * (One block at a time: with two side by side V8 runs out of registers and spills accumulators.)
 * With gmax ≠ 0, gmax[g] also gets the largest logit of each group of four blocks (64 rows; the last group
 * may be partial).
 */
function headBlocks(out: usize, gmax: usize, x: usize, w: usize, blocks: i32, C: i32): void {
  let p = w;
  let o = out;
  let m = f32x4.splat(-Infinity);
  for (let b = 0; b < blocks; b++) {
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    for (let c = 0; c < C; c++) {
      const xs = v128.load32_splat(x + ((<usize>c) << 2));
      a0 = madd(xs, v128.load(p), a0);
      a1 = madd(xs, v128.load(p, 16), a1);
      a2 = madd(xs, v128.load(p, 32), a2);
      a3 = madd(xs, v128.load(p, 48), a3);
      p += BLOCK << 2;
    }
    v128.store(o, a0);
    v128.store(o, a1, 16);
    v128.store(o, a2, 32);
    v128.store(o, a3, 48);
    o += BLOCK << 2;
    if (gmax) {
      m = f32x4.pmax(m, f32x4.pmax(f32x4.pmax(a0, a1), f32x4.pmax(a2, a3)));
      if ((b & 3) === 3 || b === blocks - 1) {
        store<f32>(gmax + ((<usize>(b >> 2)) << 2), laneMax(m));
        m = f32x4.splat(-Infinity);
      }
    }
  }
}

/** The LM head's logits (see headBlocks). */
export function lmHead(out: usize, x: usize, w: usize, blocks: i32, C: i32): void {
  headBlocks(out, 0, x, w, blocks, C);
}

/** The LM head's logits and each 64-row group's largest logit in gmax[ceil(blocks/4)] (see headBlocks). */
export function lmHeadMax(out: usize, gmax: usize, x: usize, w: usize, blocks: i32, C: i32): void {
  headBlocks(out, gmax, x, w, blocks, C);
}

/** Rows per group of the LM head's logits whose maximum lmHeadMax records (four blocks). */
const GROUP: i32 = 64;

/**
 * Approximate logits from an int8 copy of the LM head, for screening (see head/screen.ts), for n input rows:
 * out[r][v] = scale[v]·hScales[r]·Σ_c q[v, c]·m[r][c] with exact integer sums, q packed as [rows/4][C2/2][4 rows]
 * [2 ch] int8 (C2 = C rounded up to even, zero-padded) and m[r] the int16 input of row r at h + r·hStride·2
 * (C2 values). Each int16 dot product adds two channels of four rows. gmax[r][g] gets each 64-row group's
 * largest score; row r's outputs start at out + r·outStride·4, its maxima at gmax + r·gmaxStride·4. Rows come
 * in whole groups. Each row's scores are the same bits whatever n is; the weights are read once for all rows.
 */
export function screenHead(
  out: usize,
  gmax: usize,
  q: usize,
  scale: usize,
  h: usize,
  hScales: usize,
  n: i32,
  groups: i32,
  C2: i32,
  outStride: i32,
  gmaxStride: i32,
  hStride: i32,
): void {
  if (n === 1) {
    screenHeadOne(out, gmax, q, scale, h, load<f32>(hScales), groups, C2);
    return;
  }
  const pairs = C2 >> 1;
  const quadBytes = <usize>(pairs << 3);
  let pq = q;
  let ps = scale;
  for (let g = 0; g < groups; g++) {
    for (let quad = 0; quad < GROUP >> 2; quad++) {
      const sv = v128.load(ps);
      const at = (<usize>(g * GROUP + (quad << 2))) << 2;
      for (let r = 0; r < n; r++) {
        const hr = h + ((<usize>(r * hStride)) << 1);
        let acc = i32x4.splat(0);
        let p = pq;
        for (let j = 0; j < pairs; j++) {
          acc = i32x4.add(
            acc,
            i32x4.dot_i16x8_s(v128.load8x8_s(p), v128.load32_splat(hr + ((<usize>j) << 2))),
          );
          p += 8;
        }
        const hs = f32x4.splat(load<f32>(hScales + ((<usize>r) << 2)));
        v128.store(
          out + ((<usize>(r * outStride)) << 2) + at,
          f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(acc), sv), hs),
        );
      }
      pq += quadBytes;
      ps += 16;
    }
    // Each row's group maximum over its 16 stored quads, in quad order as the one-row kernel takes it.
    for (let r = 0; r < n; r++) {
      const po = out + ((<usize>(r * outStride + g * GROUP)) << 2);
      let m = f32x4.splat(-Infinity);
      for (let quad = 0; quad < GROUP >> 2; quad++) m = f32x4.pmax(m, v128.load(po + ((<usize>quad) << 4)));
      store<f32>(gmax + ((<usize>(r * gmaxStride + g)) << 2), laneMax(m));
    }
  }
}

/** screenHead for one row (see there), the seed model's n_embd 16 with its eight input pairs in registers. */
function screenHeadOne(
  out: usize,
  gmax: usize,
  q: usize,
  scale: usize,
  h: usize,
  hScale: f32,
  groups: i32,
  C2: i32,
): void {
  const hs = f32x4.splat(hScale);
  let pq = q;
  let po = out;
  let ps = scale;
  const pairs = C2 >> 1;
  if (pairs === 8) {
    // n_embd 16 (the seed model): the eight input pairs stay in registers, no channel loop.
    const h0 = v128.load32_splat(h);
    const h1 = v128.load32_splat(h, 4);
    const h2 = v128.load32_splat(h, 8);
    const h3 = v128.load32_splat(h, 12);
    const h4 = v128.load32_splat(h, 16);
    const h5 = v128.load32_splat(h, 20);
    const h6 = v128.load32_splat(h, 24);
    const h7 = v128.load32_splat(h, 28);
    for (let g = 0; g < groups; g++) {
      let m = f32x4.splat(-Infinity);
      for (let quad = 0; quad < GROUP >> 2; quad++) {
        let acc = i32x4.dot_i16x8_s(v128.load8x8_s(pq), h0);
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(pq, 8), h1));
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(pq, 16), h2));
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(pq, 24), h3));
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(pq, 32), h4));
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(pq, 40), h5));
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(pq, 48), h6));
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(pq, 56), h7));
        pq += 64;
        const a = f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(acc), v128.load(ps)), hs);
        v128.store(po, a);
        m = f32x4.pmax(m, a);
        po += 16;
        ps += 16;
      }
      store<f32>(gmax + ((<usize>g) << 2), laneMax(m));
    }
    return;
  }
  for (let g = 0; g < groups; g++) {
    let m = f32x4.splat(-Infinity);
    for (let quad = 0; quad < GROUP >> 2; quad++) {
      let acc = i32x4.splat(0);
      for (let j = 0; j < pairs; j++) {
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(v128.load8x8_s(pq), v128.load32_splat(h + ((<usize>j) << 2))));
        pq += 8;
      }
      const a = f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(acc), v128.load(ps)), hs);
      v128.store(po, a);
      m = f32x4.pmax(m, a);
      po += 16;
      ps += 16;
    }
    store<f32>(gmax + ((<usize>g) << 2), laneMax(m));
  }
}

/**
 * vals[i] = the logit of row ids[i], bit-identical to lmHead's: four rows at a time, each lane gathering its
 * row's weights from the packed f32 head ([V/16][C][16]) and running the same lane-wise multiply-add chain
 * over the channels in order as headBlocks does. vals holds count rounded up to 4 entries.
 */
export function headRows(vals: usize, x: usize, w: usize, ids: usize, count: i32, C: i32): void {
  const rowStride = (<usize>(C * BLOCK)) << 2;
  for (let i = 0; i < count; i += 4) {
    const last = count - 1;
    const r0 = load<i32>(ids + ((<usize>i) << 2));
    const r1 = load<i32>(ids + ((<usize>min(i + 1, last)) << 2));
    const r2 = load<i32>(ids + ((<usize>min(i + 2, last)) << 2));
    const r3 = load<i32>(ids + ((<usize>min(i + 3, last)) << 2));
    let p0 = w + <usize>(r0 >> 4) * rowStride + ((<usize>(r0 & 15)) << 2);
    let p1 = w + <usize>(r1 >> 4) * rowStride + ((<usize>(r1 & 15)) << 2);
    let p2 = w + <usize>(r2 >> 4) * rowStride + ((<usize>(r2 & 15)) << 2);
    let p3 = w + <usize>(r3 >> 4) * rowStride + ((<usize>(r3 & 15)) << 2);
    let acc = f32x4.splat(0);
    for (let c = 0; c < C; c++) {
      let wv = f32x4.splat(load<f32>(p0));
      wv = f32x4.replace_lane(wv, 1, load<f32>(p1));
      wv = f32x4.replace_lane(wv, 2, load<f32>(p2));
      wv = f32x4.replace_lane(wv, 3, load<f32>(p3));
      acc = madd(v128.load32_splat(x + ((<usize>c) << 2)), wv, acc);
      p0 += BLOCK << 2;
      p1 += BLOCK << 2;
      p2 += BLOCK << 2;
      p3 += BLOCK << 2;
    }
    v128.store(vals + ((<usize>i) << 2), acc);
  }
}

/**
 * The k-th largest of n scores (1 ≤ k ≤ n, no NaN), found by quickselect on a copy at `work` (n floats):
 * Hoare partitions around a median of three, keeping the side that holds position k − 1 in descending order.
 */
export function kthLargest(scores: usize, n: i32, k: i32, work: usize): f32 {
  memory.copy(work, scores, (<usize>n) << 2);
  const target = k - 1;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const a = load<f32>(work + ((<usize>lo) << 2));
    const b = load<f32>(work + ((<usize>(lo + ((hi - lo) >> 1))) << 2));
    const c = load<f32>(work + ((<usize>hi) << 2));
    const pivot = max(min(a, b), min(max(a, b), c));
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (load<f32>(work + ((<usize>i) << 2)) > pivot) i++;
      while (load<f32>(work + ((<usize>j) << 2)) < pivot) j--;
      if (i <= j) {
        const pi = work + ((<usize>i) << 2);
        const pj = work + ((<usize>j) << 2);
        const t = load<f32>(pi);
        store<f32>(pi, load<f32>(pj));
        store<f32>(pj, t);
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return load<f32>(work + ((<usize>target) << 2));
}

/**
 * Writes every v < V with scores[v] ≥ cut to ids (ascending) and its score to vals, visiting only the
 * 64-row groups whose maximum (gmax, from lmHeadMax) reaches the cut; returns how many. Both hold V entries.
 */
export function collectAtLeast(
  scores: usize,
  gmax: usize,
  groups: i32,
  V: i32,
  cut: f32,
  ids: usize,
  vals: usize,
): i32 {
  let n = 0;
  const cv = f32x4.splat(cut);
  for (let g = 0; g < groups; g++) {
    if (!(load<f32>(gmax + ((<usize>g) << 2)) >= cut)) continue;
    const v0 = g * GROUP;
    for (let v = v0; v < v0 + GROUP; v += 4) {
      const chunk = v128.load(scores + ((<usize>v) << 2));
      if (!v128.any_true(f32x4.ge(chunk, cv))) continue;
      for (let j = 0; j < 4; j++) {
        const id = v + j;
        const s = load<f32>(scores + ((<usize>id) << 2));
        if (id < V && s >= cut) {
          store<i32>(ids + ((<usize>n) << 2), id);
          store<f32>(vals + ((<usize>n) << 2), s);
          n++;
        }
      }
    }
  }
  return n;
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
 * A bounded min-heap as in the JS sampler; sixteen scores at a time are compared against the heap's
 * weakest entry with SIMD, so the heap is only touched when one of them beats it.
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
  // Sixteen scores per test against the weakest kept value, held in a register until the heap changes.
  let weakest = v128.load32_splat(vals);
  for (; v + 16 <= V; v += 16) {
    const p = scores + ((<usize>v) << 2);
    const hit = v128.or(
      v128.or(f32x4.gt(v128.load(p), weakest), f32x4.gt(v128.load(p, 16), weakest)),
      v128.or(f32x4.gt(v128.load(p, 32), weakest), f32x4.gt(v128.load(p, 48), weakest)),
    );
    if (v128.any_true(hit)) {
      for (let j = 0; j < 16; j++) offer(scores, ids, vals, v + j, k);
      weakest = v128.load32_splat(vals);
    }
  }
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
 * (exactly the JS `>` scan that starts from index 0). Four groups of four lanes track their own best over
 * sixteen scores per step (independent compare-select chains), then the sixteen lanes are merged.
 */
export function argmax(scores: usize, V: i32): i32 {
  const first = load<f32>(scores);
  if (Number.isNaN(<f64>first)) return 0;
  let v0 = f32x4.splat(-Infinity);
  let v1 = v0;
  let v2 = v0;
  let v3 = v0;
  let i0 = i32x4.splat(-1);
  let i1 = i0;
  let i2 = i0;
  let i3 = i0;
  let idx = i32x4(0, 1, 2, 3);
  const four = i32x4.splat(4);
  const sixteen = i32x4.splat(16);
  let v = 0;
  for (; v + 16 <= V; v += 16) {
    const p = scores + ((<usize>v) << 2);
    const c0 = v128.load(p);
    const c1 = v128.load(p, 16);
    const c2 = v128.load(p, 32);
    const c3 = v128.load(p, 48);
    const g0 = f32x4.gt(c0, v0);
    const g1 = f32x4.gt(c1, v1);
    const g2 = f32x4.gt(c2, v2);
    const g3 = f32x4.gt(c3, v3);
    v0 = v128.bitselect(c0, v0, g0);
    v1 = v128.bitselect(c1, v1, g1);
    v2 = v128.bitselect(c2, v2, g2);
    v3 = v128.bitselect(c3, v3, g3);
    i0 = v128.bitselect(idx, i0, g0);
    const idx1 = i32x4.add(idx, four);
    i1 = v128.bitselect(idx1, i1, g1);
    const idx2 = i32x4.add(idx1, four);
    i2 = v128.bitselect(idx2, i2, g2);
    i3 = v128.bitselect(i32x4.add(idx2, four), i3, g3);
    idx = i32x4.add(idx, sixteen);
  }
  let best = 0;
  let bestValue = first;
  for (let g = 0; g < 4; g++) {
    const is = g === 0 ? i0 : g === 1 ? i1 : g === 2 ? i2 : i3;
    for (let lane = 0; lane < 4; lane++) {
      const i =
        lane === 0
          ? i32x4.extract_lane(is, 0)
          : lane === 1
            ? i32x4.extract_lane(is, 1)
            : lane === 2
              ? i32x4.extract_lane(is, 2)
              : i32x4.extract_lane(is, 3);
      if (i < 0) continue;
      const s = load<f32>(scores + ((<usize>i) << 2));
      if (s > bestValue || (s === bestValue && i < best)) {
        bestValue = s;
        best = i;
      }
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

/** Rows of A and columns of B per micro-tile: a 4×8 tile of C lives in eight f32x4 registers. */
const MR: i32 = 4;
const NR: i32 = 8;
/** Depth of one k-block: an MR×KC panel of packed A (16 KiB) and a KC×NR panel of B (8 KiB) stay in L1. */
const KC: i32 = 256;
/** Rows of A packed per block (MC×KC floats = 64 KiB, L2-resident). */
const MC: i32 = 64;
/** Columns of B packed per block (KC×NC floats = 1 MiB). */
const NC: i32 = 1024;
/**
 * A row-major A is read in place (no packing) when C has at most this many columns: each packed element
 * would serve only N multiply-adds, so packing cost as much as a fifth of the product on the LM head's
 * [512×50257]·[50257×64].
 */
const IN_PLACE_MAX_N: i32 = 256;

/** Bytes of scratch gemm needs at `work`: one packed block of A, one of B, and an edge tile. */
export function gemmWorkBytes(): i32 {
  return (MC * KC + KC * NC + MR * NR) << 2;
}

/**
 * Stores the 4×4 block whose rows are r0..r3 transposed: column c of the block goes to q + c·step.
 */
function store4x4T(q: usize, step: usize, r0: v128, r1: v128, r2: v128, r3: v128): void {
  const t0 = f32x4.shuffle(r0, r1, 0, 4, 1, 5);
  const t1 = f32x4.shuffle(r0, r1, 2, 6, 3, 7);
  const t2 = f32x4.shuffle(r2, r3, 0, 4, 1, 5);
  const t3 = f32x4.shuffle(r2, r3, 2, 6, 3, 7);
  v128.store(q, f32x4.shuffle(t0, t2, 0, 1, 4, 5));
  v128.store(q + step, f32x4.shuffle(t0, t2, 2, 3, 6, 7));
  v128.store(q + 2 * step, f32x4.shuffle(t1, t3, 0, 1, 4, 5));
  v128.store(q + 3 * step, f32x4.shuffle(t1, t3, 2, 3, 6, 7));
}

/**
 * Packs rows [i0, i0+mc) × depth [k0, k0+kc) of A into MR-row panels, k-major inside ([mc/MR][kc][MR]: the
 * MR rows' values at one k side by side, which the micro-kernel broadcasts one at a time); rows past mc are
 * zero. A transposed A (sAi = 1) has them side by side already (one vector copy per panel and k); a
 * row-major one (sAk = 1) goes through 4×4 transposes, four k at a time.
 */
function packA(dst: usize, a: usize, sAi: i32, sAk: i32, i0: i32, mc: i32, k0: i32, kc: i32): void {
  const strideK = (<usize>sAk) << 2;
  const strideI = (<usize>sAi) << 2;
  const panel = (<usize>(MR * kc)) << 2;
  let ir = 0;
  if (sAi === 1) {
    // k by k: the block's values at one k are adjacent (each page of A is visited once per block).
    const full = mc & ~(MR - 1);
    let s = a + ((<usize>i0 + <usize>k0 * <usize>sAk) << 2);
    for (let k = 0; k < kc; k++) {
      let q = dst + ((<usize>k) << 4);
      for (let i = 0; i < full; i += MR) {
        v128.store(q, v128.load(s + ((<usize>i) << 2)));
        q += panel;
      }
      s += strideK;
    }
    ir = full;
  }
  for (; ir < mc; ir += MR) {
    const rows = min(MR, mc - ir);
    const p = dst + <usize>(ir / MR) * panel;
    const base = a + ((<usize>(i0 + ir) * <usize>sAi + <usize>k0 * <usize>sAk) << 2);
    let k = 0;
    if (rows === MR && sAk === 1) {
      for (; k + 4 <= kc; k += 4) {
        const s = base + ((<usize>k) << 2);
        store4x4T(
          p + ((<usize>k) << 4),
          16,
          v128.load(s),
          v128.load(s + strideI),
          v128.load(s + 2 * strideI),
          v128.load(s + 3 * strideI),
        );
      }
    }
    for (; k < kc; k++)
      for (let r = 0; r < MR; r++)
        store<f32>(
          p + ((<usize>(k * MR + r)) << 2),
          r < rows ? load<f32>(base + <usize>r * strideI + <usize>k * strideK) : 0,
        );
  }
}

/**
 * Packs depth [k0, k0+kc) × columns [j0, j0+nc) of B (element (k, j) at B + 4·(k·sBk + j·sBj)) into NR-column
 * panels, k-major inside ([nc/NR][kc][NR]), zero-filling columns past nc. Row-major B copies four floats
 * at a time; a transposed B (sBk = 1) goes through 4×4 transposes.
 */
function packB(dst: usize, b: usize, sBk: i32, sBj: i32, k0: i32, kc: i32, j0: i32, nc: i32): void {
  let p = dst;
  const strideK = (<usize>sBk) << 2;
  const strideJ = (<usize>sBj) << 2;
  for (let jr = 0; jr < nc; jr += NR) {
    const cols = min(NR, nc - jr);
    const base = b + ((<usize>k0 * <usize>sBk + <usize>(j0 + jr) * <usize>sBj) << 2);
    if (cols === NR && sBj === 1) {
      let s = base;
      let q = p;
      for (let k = 0; k < kc; k++) {
        v128.store(q, v128.load(s));
        v128.store(q, v128.load(s, 16), 16);
        q += NR << 2;
        s += strideK;
      }
    } else if (cols === NR && sBk === 1) {
      let k = 0;
      for (; k + 4 <= kc; k += 4) {
        const s = base + ((<usize>k) << 2);
        const q = p + ((<usize>(k * NR)) << 2);
        store4x4T(
          q,
          NR << 2,
          v128.load(s),
          v128.load(s + strideJ),
          v128.load(s + 2 * strideJ),
          v128.load(s + 3 * strideJ),
        );
        const s4 = s + 4 * strideJ;
        store4x4T(
          q + 16,
          NR << 2,
          v128.load(s4),
          v128.load(s4 + strideJ),
          v128.load(s4 + 2 * strideJ),
          v128.load(s4 + 3 * strideJ),
        );
      }
      for (; k < kc; k++)
        for (let c = 0; c < NR; c++)
          store<f32>(
            p + ((<usize>(k * NR + c)) << 2),
            load<f32>(base + <usize>c * strideJ + ((<usize>k) << 2)),
          );
    } else {
      for (let c = 0; c < NR; c++) {
        let q = p + ((<usize>c) << 2);
        if (c >= cols) {
          for (let k = 0; k < kc; k++) {
            store<f32>(q, 0);
            q += NR << 2;
          }
          continue;
        }
        let s = base + <usize>c * strideJ;
        for (let k = 0; k < kc; k++) {
          store<f32>(q, load<f32>(s));
          q += NR << 2;
          s += strideK;
        }
      }
    }
    p += (<usize>(NR * kc)) << 2;
  }
}

/**
 * Adds (or, with `add` false, writes) a 4×8 tile, rows x_r | y_r, to C (rows × cols valid, row stride ldc).
 * Full tiles go straight to C; edge tiles through `tile` (128 bytes).
 */
function storeTile(
  c: usize,
  ldc: i32,
  rows: i32,
  cols: i32,
  add: bool,
  tile: usize,
  x0: v128,
  y0: v128,
  x1: v128,
  y1: v128,
  x2: v128,
  y2: v128,
  x3: v128,
  y3: v128,
): void {
  const stride = (<usize>ldc) << 2;
  if (rows === MR && cols === NR) {
    const c1 = c + stride;
    const c2 = c1 + stride;
    const c3 = c2 + stride;
    if (add) {
      x0 = f32x4.add(x0, v128.load(c));
      y0 = f32x4.add(y0, v128.load(c, 16));
      x1 = f32x4.add(x1, v128.load(c1));
      y1 = f32x4.add(y1, v128.load(c1, 16));
      x2 = f32x4.add(x2, v128.load(c2));
      y2 = f32x4.add(y2, v128.load(c2, 16));
      x3 = f32x4.add(x3, v128.load(c3));
      y3 = f32x4.add(y3, v128.load(c3, 16));
    }
    v128.store(c, x0);
    v128.store(c, y0, 16);
    v128.store(c1, x1);
    v128.store(c1, y1, 16);
    v128.store(c2, x2);
    v128.store(c2, y2, 16);
    v128.store(c3, x3);
    v128.store(c3, y3, 16);
    return;
  }
  v128.store(tile, x0);
  v128.store(tile, y0, 16);
  v128.store(tile, x1, 32);
  v128.store(tile, y1, 48);
  v128.store(tile, x2, 64);
  v128.store(tile, y2, 80);
  v128.store(tile, x3, 96);
  v128.store(tile, y3, 112);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const pc = c + <usize>r * stride + ((<usize>j) << 2);
      const v = load<f32>(tile + ((<usize>(r * NR + j)) << 2));
      store<f32>(pc, add ? load<f32>(pc) + v : v);
    }
  }
}

/**
 * One MR×NR tile from a packed A panel (its values broadcast as they are loaded, see packA) and a packed B panel:
 * acc = Σ_k A-panel[k]·B-panel[k], then stored by storeTile.
 */
function microPacked(
  pa: usize,
  pb: usize,
  kc: i32,
  c: usize,
  ldc: i32,
  rows: i32,
  cols: i32,
  add: bool,
  tile: usize,
): void {
  let x0 = f32x4.splat(0);
  let y0 = f32x4.splat(0);
  let x1 = f32x4.splat(0);
  let y1 = f32x4.splat(0);
  let x2 = f32x4.splat(0);
  let y2 = f32x4.splat(0);
  let x3 = f32x4.splat(0);
  let y3 = f32x4.splat(0);
  const end = pb + ((<usize>(kc * NR)) << 2);
  while (pb < end) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    const a0 = v128.load32_splat(pa);
    x0 = madd(a0, b0, x0);
    y0 = madd(a0, b1, y0);
    const a1 = v128.load32_splat(pa, 4);
    x1 = madd(a1, b0, x1);
    y1 = madd(a1, b1, y1);
    const a2 = v128.load32_splat(pa, 8);
    x2 = madd(a2, b0, x2);
    y2 = madd(a2, b1, y2);
    const a3 = v128.load32_splat(pa, 12);
    x3 = madd(a3, b0, x3);
    y3 = madd(a3, b1, y3);
    pa += MR << 2;
    pb += NR << 2;
  }
  storeTile(c, ldc, rows, cols, add, tile, x0, y0, x1, y1, x2, y2, x3, y3);
}

/**
 * One full MR×NR tile reading four rows of a row-major A in place (row r at pa + r·lda bytes, k along the
 * row) against a packed B panel; the same sums in the same order as microPacked.
 */
function microInPlace(
  pa: usize,
  lda: usize,
  pb: usize,
  kc: i32,
  c: usize,
  ldc: i32,
  cols: i32,
  add: bool,
  tile: usize,
): void {
  let x0 = f32x4.splat(0);
  let y0 = f32x4.splat(0);
  let x1 = f32x4.splat(0);
  let y1 = f32x4.splat(0);
  let x2 = f32x4.splat(0);
  let y2 = f32x4.splat(0);
  let x3 = f32x4.splat(0);
  let y3 = f32x4.splat(0);
  const end = pb + ((<usize>(kc * NR)) << 2);
  const lda2 = lda << 1;
  const lda3 = lda * 3;
  while (pb < end) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    let a = v128.load32_splat(pa);
    x0 = madd(a, b0, x0);
    y0 = madd(a, b1, y0);
    a = v128.load32_splat(pa + lda);
    x1 = madd(a, b0, x1);
    y1 = madd(a, b1, y1);
    a = v128.load32_splat(pa + lda2);
    x2 = madd(a, b0, x2);
    y2 = madd(a, b1, y2);
    a = v128.load32_splat(pa + lda3);
    x3 = madd(a, b0, x3);
    y3 = madd(a, b1, y3);
    pa += 4;
    pb += NR << 2;
  }
  storeTile(c, ldc, MR, cols, add, tile, x0, y0, x1, y1, x2, y2, x3, y3);
}

/**
 * C[M×N] (+)= A·B. A's element (i, k) is at A + 4·(i·sAi + k·sAk) and B's (k, j) at B + 4·(k·sBk + j·sBj), so
 * either may be row-major or transposed; C is row-major with row stride ldc. Blocked as in BLIS: k-blocks
 * of KC, B packed NC columns at a time, A packed MC rows at a time into `work` (gemmWorkBytes() bytes,
 * plus 128 for edge tiles), then 4×8 register tiles. A row-major A is read in place instead when N is at
 * most IN_PLACE_MAX_N (a last partial panel of rows is still packed). With `accumulate` false C is
 * overwritten. Each product of C's sums runs k in ascending order in blocks of KC, whatever the shape and
 * path, so results do not depend on how callers split M or N.
 */
export function gemm(
  c: usize,
  a: usize,
  sAi: i32,
  sAk: i32,
  b: usize,
  sBk: i32,
  sBj: i32,
  M: i32,
  N: i32,
  K: i32,
  ldc: i32,
  accumulate: bool,
  work: usize,
): void {
  if (K <= 0) {
    if (!accumulate)
      for (let i = 0; i < M; i++) memory.fill(c + ((<usize>i * <usize>ldc) << 2), 0, (<usize>N) << 2);
    return;
  }
  const packedA = work;
  const packedB = work + ((<usize>(MC * KC)) << 2);
  const tile = work + ((<usize>(MC * KC + KC * NC)) << 2);
  const inPlace = sAk === 1 && N <= IN_PLACE_MAX_N;
  const lda = (<usize>sAi) << 2;
  for (let j0 = 0; j0 < N; j0 += NC) {
    const nc = min(NC, N - j0);
    for (let k0 = 0; k0 < K; k0 += KC) {
      const kc = min(KC, K - k0);
      const add = accumulate || k0 > 0;
      packB(packedB, b, sBk, sBj, k0, kc, j0, nc);
      for (let i0 = 0; i0 < M; i0 += MC) {
        const mc = min(MC, M - i0);
        // Rows [i0, i0 + full) are read in place; the rest are packed.
        const full = inPlace ? mc & ~(MR - 1) : 0;
        if (full < mc) packA(packedA, a, sAi, sAk, i0 + full, mc - full, k0, kc);
        // Along C's rows: a tile's stores continue through the same rows of C (written once on the forward
        // LM-head product: 24 % faster than down its columns, 103 MB of C), and the packed B block stays in L2.
        for (let ir = 0; ir < mc; ir += MR) {
          for (let jr = 0; jr < nc; jr += NR) {
            const cols = min(NR, nc - jr);
            const pb = packedB + ((<usize>(jr * kc)) << 2);
            const pc = c + ((<usize>(i0 + ir) * <usize>ldc + <usize>(j0 + jr)) << 2);
            if (ir < full) {
              const pa = a + ((<usize>(i0 + ir) * <usize>sAi + <usize>k0) << 2);
              microInPlace(pa, lda, pb, kc, pc, ldc, cols, add, tile);
            } else {
              const pa = packedA + ((<usize>((ir - full) * kc)) << 2);
              microPacked(pa, pb, kc, pc, ldc, min(MR, mc - ir), cols, add, tile);
            }
          }
        }
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

/**
 * Packs `rows` row-major LM-head rows of C floats at src into the head layout [blocks][C][16] at dst (what
 * headBlocks reads), zero-filling the rows a partial last block lacks, and writes each row's Euclidean norm as
 * an f64 at norms: squares summed in f64 in channel order, as a JS scan does, so the same bits.
 * Full blocks with C a multiple of 4 move as 4×4 tiles of vectors, two rows' norms per f64x2; the rest one
 * float at a time.
 */
export function packHeadRows(dst: usize, src: usize, rows: i32, C: i32, norms: usize): void {
  const rowBytes = (<usize>C) << 2;
  const blockBytes = rowBytes * BLOCK;
  const blocks = (rows + BLOCK - 1) / BLOCK;
  for (let b = 0; b < blocks; b++) {
    const r0 = b * BLOCK;
    const out = dst + <usize>b * blockBytes;
    if (rows - r0 >= BLOCK && (C & 3) === 0) {
      for (let j = 0; j < BLOCK; j += 4) {
        const s0 = src + <usize>(r0 + j) * rowBytes;
        const s1 = s0 + rowBytes;
        const s2 = s1 + rowBytes;
        const s3 = s2 + rowBytes;
        let n01 = f64x2.splat(0);
        let n23 = f64x2.splat(0);
        for (let c = 0; c < C; c += 4) {
          const off = (<usize>c) << 2;
          const a = v128.load(s0 + off);
          const e = v128.load(s1 + off);
          const g = v128.load(s2 + off);
          const h = v128.load(s3 + off);
          const lo0 = v128.shuffle<f32>(a, e, 0, 4, 1, 5);
          const hi0 = v128.shuffle<f32>(a, e, 2, 6, 3, 7);
          const lo1 = v128.shuffle<f32>(g, h, 0, 4, 1, 5);
          const hi1 = v128.shuffle<f32>(g, h, 2, 6, 3, 7);
          // Channel c + k of rows j..j+3 (one vector each) lands at [c + k][j..j+3] of the block.
          const k0 = v128.shuffle<f32>(lo0, lo1, 0, 1, 4, 5);
          const k1 = v128.shuffle<f32>(lo0, lo1, 2, 3, 6, 7);
          const k2 = v128.shuffle<f32>(hi0, hi1, 0, 1, 4, 5);
          const k3 = v128.shuffle<f32>(hi0, hi1, 2, 3, 6, 7);
          const at = out + ((<usize>(c * BLOCK + j)) << 2);
          v128.store(at, k0);
          v128.store(at, k1, BLOCK << 2);
          v128.store(at, k2, BLOCK << 3);
          v128.store(at, k3, (BLOCK << 3) + (BLOCK << 2));
          n01 = addSquares(n01, k0);
          n23 = addSquares(n23, v128.shuffle<f32>(k0, k0, 2, 3, 0, 1));
          n01 = addSquares(n01, k1);
          n23 = addSquares(n23, v128.shuffle<f32>(k1, k1, 2, 3, 0, 1));
          n01 = addSquares(n01, k2);
          n23 = addSquares(n23, v128.shuffle<f32>(k2, k2, 2, 3, 0, 1));
          n01 = addSquares(n01, k3);
          n23 = addSquares(n23, v128.shuffle<f32>(k3, k3, 2, 3, 0, 1));
        }
        const at = norms + ((<usize>(r0 + j)) << 3);
        v128.store(at, f64x2.sqrt(n01));
        v128.store(at, f64x2.sqrt(n23), 16);
      }
    } else {
      for (let j = 0; j < BLOCK; j++) {
        const r = r0 + j;
        const s = src + <usize>r * rowBytes;
        let sum: f64 = 0;
        for (let c = 0; c < C; c++) {
          const x: f32 = r < rows ? load<f32>(s + ((<usize>c) << 2)) : 0;
          store<f32>(out + ((<usize>(c * BLOCK + j)) << 2), x);
          sum += <f64>x * <f64>x;
        }
        if (r < rows) store<f64>(norms + ((<usize>r) << 3), Math.sqrt(sum));
      }
    }
  }
}

/** acc + x² per lane for the low two f32 lanes of v, in f64 (exact squares, one rounding per add). */
function addSquares(acc: v128, v: v128): v128 {
  const x = f64x2.promote_low_f32x4(v);
  return f64x2.add(acc, f64x2.mul(x, x));
}

/** Digits of the radix sort in hotRows: 6 passes of 11 bits cover the 64 bits of an f64. */
const RADIX_BITS: u64 = 11;
const RADIX_BUCKETS: i32 = 1 << 11;

/**
 * Sorts n f64 at a ascending by their bit patterns (numeric order for values ≥ +0, NaN last) through b,
 * counting in `counts` (RADIX_BUCKETS i32); an even number of passes leaves the result in a.
 */
function radixSortBits(a: usize, b: usize, n: i32, counts: usize): void {
  let src = a;
  let dst = b;
  for (let shift: u64 = 0; shift < 64; shift += RADIX_BITS) {
    memory.fill(counts, 0, (<usize>RADIX_BUCKETS) << 2);
    for (let i = 0; i < n; i++) {
      const d = (<usize>((load<u64>(src + ((<usize>i) << 3)) >> shift) & <u64>(RADIX_BUCKETS - 1))) << 2;
      store<i32>(counts + d, load<i32>(counts + d) + 1);
    }
    let sum = 0;
    for (let d = 0; d < RADIX_BUCKETS; d++) {
      const at = counts + ((<usize>d) << 2);
      const c = load<i32>(at);
      store<i32>(at, sum);
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const x = load<u64>(src + ((<usize>i) << 3));
      const d = counts + ((<usize>((x >> shift) & <u64>(RADIX_BUCKETS - 1))) << 2);
      const pos = load<i32>(d);
      store<i32>(d, pos + 1);
      store<u64>(dst + ((<usize>pos) << 3), x);
    }
    const t = src;
    src = dst;
    dst = t;
  }
}

/**
 * The hot rows of an LM head from its n row norms (each ≥ +0 or NaN) at norms: sorted descending, the widest
 * gap sorted[i] / sorted[i + 1] ≥ minRatio with i < n / 2 (the last of equal ratios), then every row whose norm
 * is ≥ sorted[i], in order, into ids (room for n i32). Returns how many, or -1 when there is no such gap;
 * stores the largest norm below the gap as an f64 at coldMax. work: 16·n + 8192 bytes. Same result as
 * findHotRows' JS scan.
 */
export function hotRows(norms: usize, n: i32, minRatio: f64, ids: usize, coldMax: usize, work: usize): i32 {
  const sorted = work;
  const tmp = work + ((<usize>n) << 3);
  const counts = tmp + ((<usize>n) << 3);
  memory.copy(sorted, norms, (<usize>n) << 3);
  radixSortBits(sorted, tmp, n, counts);
  let best = -1;
  let bestRatio = minRatio;
  for (let i = 0; i + 1 < n && i < n >> 1; i++) {
    const hi = load<f64>(sorted + ((<usize>(n - 1 - i)) << 3));
    const lo = load<f64>(sorted + ((<usize>(n - 2 - i)) << 3));
    const ratio: f64 = lo > 0 ? hi / lo : hi > 0 ? Infinity : 0;
    if (ratio >= bestRatio) {
      bestRatio = ratio;
      best = i;
    }
  }
  if (best < 0) return -1;
  const threshold = load<f64>(sorted + ((<usize>(n - 1 - best)) << 3));
  let count = 0;
  let cold: f64 = 0;
  for (let v = 0; v < n; v++) {
    const x = load<f64>(norms + ((<usize>v) << 3));
    if (x >= threshold) {
      store<i32>(ids + ((<usize>count) << 2), v);
      count++;
    } else if (x > cold) cold = x;
  }
  store<f64>(coldMax, cold);
  return count;
}

/**
 * Packs rows ids[0..count) of a head packed as [V/16][C][16] at `head` into a head of their own at dst, in the
 * same layout ([ceil(count/16)][C][16], row i of the subset in block i / 16, lane i % 16), zero-filling the
 * last block's unused lanes: the same floats as packing those rows from the unpacked weights.
 */
export function packHeadSubset(dst: usize, head: usize, ids: usize, count: i32, C: i32): void {
  const blockBytes = (<usize>(C * BLOCK)) << 2;
  const blocks = (count + BLOCK - 1) / BLOCK;
  for (let i = 0; i < blocks * BLOCK; i++) {
    const out = dst + <usize>(i >> 4) * blockBytes + ((<usize>(i & 15)) << 2);
    if (i < count) {
      const v = load<i32>(ids + ((<usize>i) << 2));
      let p = head + <usize>(v >> 4) * blockBytes + ((<usize>(v & 15)) << 2);
      let o = out;
      for (let c = 0; c < C; c++) {
        store<f32>(o, load<f32>(p));
        p += BLOCK << 2;
        o += BLOCK << 2;
      }
    } else {
      let o = out;
      for (let c = 0; c < C; c++) {
        store<f32>(o, 0);
        o += BLOCK << 2;
      }
    }
  }
}

// ---- Q8_0 weights (GGUF's layout: blocks of 32 int8 with one scale, along each row of the [out, in] matrix) ----

/** Weights per Q8_0 block. */
const QK: i32 = 32;

/** The largest |x| of a 32-block held in eight vectors (inlined by the optimiser). */
function absMax8(v0: v128, v1: v128, v2: v128, v3: v128, v4: v128, v5: v128, v6: v128, v7: v128): f32 {
  const a = f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3)));
  const b = f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7)));
  return laneMax(f32x4.max(a, b));
}

/** f32 → f16 → f32, rounding to nearest even (what GGML_FP32_TO_FP16 stores for a block's scale). */
function roundToHalf(x: f32): f32 {
  const bits = reinterpret<u32>(x);
  const sign = bits & 0x80000000;
  const a = reinterpret<f32>(bits & 0x7fffffff);
  // From 65512 (halfway to the next power of two, a tie that goes to the even infinity) values overflow.
  if (!(a < 65512)) return (bits & 0x7fffffff) > 0x7f800000 ? x : reinterpret<f32>(sign | 0x7f800000);
  // Below 2^-14 halves are subnormal, spaced 2^-24: a + 0.5 (whose ulp is 2^-24) rounds onto that grid.
  if (a < 6.103515625e-5) {
    const m: f32 = 0.5;
    return reinterpret<f32>(sign | reinterpret<u32>(a + m - m));
  }
  // Normal halves keep 10 mantissa bits: round the low 13 bits of the f32 mantissa to even.
  const ab = reinterpret<u32>(a);
  const r = (ab + 0xfff + ((ab >> 13) & 1)) & 0xffffe000;
  return reinterpret<f32>(sign | r);
}

/**
 * Quantises n rows of IC floats at x to Q8_0 blocks as llama.cpp does for a product's input: per block of 32,
 * d = amax / 127 (stored at xd rounded to f16, as a float), q = round-to-nearest-even(x · 127 / amax) as int8 at
 * xq [n][IC]. IC is a multiple of 32. xw [n][4·IC] gets each row's values as q8Dot reads them: int16 (2·IC
 * bytes), then, in the relaxed build, |q| and the sign bytes (0 or −1).
 */
export function q8Quantize(xq: usize, xd: usize, xw: usize, x: usize, n: i32, IC: i32): void {
  const NB = IC / QK;
  let px = x;
  let pq = xq;
  let pd = xd;
  for (let r = 0; r < n; r++) {
    const pw = xw + <usize>r * ((<usize>IC) << 2);
    const rowStart = pq;
    for (let b = 0; b < NB; b++) {
      const v0 = v128.load(px);
      const v1 = v128.load(px, 16);
      const v2 = v128.load(px, 32);
      const v3 = v128.load(px, 48);
      const v4 = v128.load(px, 64);
      const v5 = v128.load(px, 80);
      const v6 = v128.load(px, 96);
      const v7 = v128.load(px, 112);
      const amax = absMax8(v0, v1, v2, v3, v4, v5, v6, v7);
      const d: f32 = amax / 127;
      const id = f32x4.splat(amax !== 0 ? <f32>127 / amax : 0);
      store<f32>(pd, roundToHalf(d));
      const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v0, id)));
      const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v1, id)));
      const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v2, id)));
      const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v3, id)));
      const q4 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v4, id)));
      const q5 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v5, id)));
      const q6 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v6, id)));
      const q7 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v7, id)));
      const lo = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3));
      const hi = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q4, q5), i16x8.narrow_i32x4_s(q6, q7));
      v128.store(pq, lo);
      v128.store(pq, hi, 16);
      px += 128;
      pq += 32;
      pd += 4;
    }
    // The row's expansions, 16 values at a time.
    for (let i = 0; i < IC; i += 16) {
      const v = v128.load(rowStart + <usize>i);
      const p16 = pw + ((<usize>i) << 1);
      v128.store(p16, i16x8.extend_low_i8x16_s(v));
      v128.store(p16, i16x8.extend_high_i8x16_s(v), 16);
      if (ASC_FEATURE_RELAXED_SIMD) {
        v128.store(pw + ((<usize>IC) << 1) + <usize>i, i8x16.abs(v));
        v128.store(pw + <usize>IC * 3 + <usize>i, i8x16.lt_s(v, i8x16.splat(0)));
      }
    }
  }
}

/**
 * 1 when relaxed_dot_i8x16_i7x16_add gives the dot products the relaxed-SIMD proposal defines on this engine
 * (Node 20's experimental one doubled them), 0 when it does not, -1 in the build without relaxed SIMD.
 */
export function relaxedDotWorks(): i32 {
  if (!ASC_FEATURE_RELAXED_SIMD) return -1;
  const a = i8x16(-3, 5, -7, 100, 1, 2, 3, 4, -128, 127, 0, 0, 10, -10, 10, -10);
  const b = i8x16(2, 3, 4, 5, 1, 1, 1, 1, 1, 1, 1, 1, 100, 100, 50, 50);
  const d = i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, i32x4(1, 2, 3, 4));
  const ok =
    i32x4.extract_lane(d, 0) === 482 &&
    i32x4.extract_lane(d, 1) === 12 &&
    i32x4.extract_lane(d, 2) === 2 &&
    i32x4.extract_lane(d, 3) === 4;
  return ok ? 1 : 0;
}

/**
 * Σ_b float(Σ_i w[row, b, i]·q[b, i]) · (wd[row, b]·qd[b]) for the four weight rows of one quad over NB blocks:
 * w holds each block as eight 16-byte groups [row 0: 4 bytes, row 1: 4, row 2: 4, row 3: 4] (group j covers
 * inputs 4j..4j+3), wd the rows' scales per block, xw the input as q8Quantize expands it and qd its scale per
 * block. The blocks
 * add in order with separate multiplies and adds (no fused rounding). Built with relaxed SIMD and `plain`
 * false, the input's sign moves onto the weights so the 7-bit operand of relaxed_dot_i8x16_i7x16_add is
 * |q| ≤ 127 (where its result is defined; a −128 weight would overflow, so callers pass `plain` for matrices
 * holding one, and where relaxedDotWorks() is not 1); otherwise int16 dot products. Both give the same exact
 * integer sums, so every build gives the same bits.
 */
function q8Dot(w: usize, wd: usize, xw: usize, qd: usize, NB: i32, IC: i32, plain: bool): v128 {
  let acc = f32x4.splat(0);
  if (ASC_FEATURE_RELAXED_SIMD && !plain) {
    let xa = xw + ((<usize>IC) << 1); // |q|
    let xs = xw + <usize>IC * 3; // sign bytes
    for (let b = 0; b < NB; b++) {
      let isum = i32x4.splat(0);
      for (let j = 0; j < 8; j++) {
        const s = v128.load32_splat(xs + ((<usize>j) << 2));
        const wv = i8x16.sub(v128.xor(v128.load(w + ((<usize>j) << 4)), s), s);
        isum = i32x4.relaxed_dot_i8x16_i7x16_add_s(wv, v128.load32_splat(xa + ((<usize>j) << 2)), isum);
      }
      const scale = f32x4.mul(v128.load(wd), v128.load32_splat(qd));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), scale));
      w += 128;
      wd += 16;
      xa += QK;
      xs += QK;
      qd += 4;
    }
    return acc;
  }
  let q = xw; // int16 values
  for (let b = 0; b < NB; b++) {
    let lo = i32x4.splat(0); // [row 0, row 0, row 1, row 1] halves
    let hi = i32x4.splat(0); // [row 2, row 2, row 3, row 3]
    for (let j = 0; j < 8; j++) {
      const x = v128.load64_splat(q + ((<usize>j) << 3));
      const wv = v128.load(w + ((<usize>j) << 4));
      lo = i32x4.add(lo, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(wv), x));
      hi = i32x4.add(hi, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(wv), x));
    }
    const isum = i32x4.add(v128.shuffle<i32>(lo, hi, 0, 2, 4, 6), v128.shuffle<i32>(lo, hi, 1, 3, 5, 7));
    const scale = f32x4.mul(v128.load(wd), v128.load32_splat(qd));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), scale));
    w += 128;
    wd += 16;
    q += QK << 1;
    qd += 4;
  }
  return acc;
}

/**
 * out[r·ldo + o] = bias[o] + Σ_b float(Σ_i w[o, b, i]·q[r, b, i]) · (wd[o, b]·xd[r, b]) for the n input rows
 * (quantised by q8Quantize; xw its expansions) and the output rows of quads [q0, q1): the weights packed as [OC/4][IC/32][128]
 * (see q8Dot; `plain` as there), scales wd [OC/4][IC/32][4] f32, bias 0 = none. Each output sums its blocks in order with
 * separate multiplies and adds (no fused rounding), so every build gives the same bits, and each input row
 * gets the same result whatever n is. With gmax ≠ 0, gmax[r·gstride + g] also gets each 64-output group's
 * largest value (quads [q0, q1) must then cover whole groups).
 */
export function q8Gemv(
  out: usize,
  ldo: i32,
  gmax: usize,
  gstride: i32,
  xw: usize,
  xd: usize,
  w: usize,
  wd: usize,
  bias: usize,
  n: i32,
  IC: i32,
  q0: i32,
  q1: i32,
  plain: bool,
): void {
  const NB = IC / QK;
  const quadBytes = (<usize>NB) << 7;
  for (let quad = q0; quad < q1; quad++) {
    const pw0 = w + <usize>quad * quadBytes;
    const pd0 = wd + ((<usize>quad * <usize>NB) << 4);
    const bv = bias ? v128.load(bias + ((<usize>quad) << 4)) : f32x4.splat(0);
    for (let r = 0; r < n; r++) {
      const px = xw + ((<usize>r * <usize>IC) << 2);
      const ps = xd + ((<usize>r * <usize>NB) << 2);
      const acc = q8Dot(pw0, pd0, px, ps, NB, IC, plain);
      const y = f32x4.add(acc, bv);
      v128.store(out + ((<usize>r * <usize>ldo + ((<usize>quad) << 2)) << 2), y);
      if (gmax) {
        const at = gmax + ((<usize>r * <usize>gstride + <usize>(quad >> 4)) << 2);
        const m = laneMax(y);
        if ((quad & 15) === 0 || m > load<f32>(at)) store<f32>(at, m);
      }
    }
  }
}

/**
 * vals[i] = output row ids[i] of q8Gemv for one input row (xw, xd), no bias: the same sums in the same order,
 * so the same bits. vals holds count rounded up to 4 entries.
 */
export function q8Rows(
  vals: usize,
  xw: usize,
  xd: usize,
  w: usize,
  wd: usize,
  ids: usize,
  count: i32,
  IC: i32,
  plain: bool,
): void {
  const NB = IC / QK;
  const quadBytes = (<usize>NB) << 7;
  for (let i = 0; i < count; i++) {
    const id = load<i32>(ids + ((<usize>i) << 2));
    const quad = id >> 2;
    const pw = w + <usize>quad * quadBytes;
    const pd = wd + ((<usize>quad * <usize>NB) << 4);
    const acc = q8Dot(pw, pd, xw, xd, NB, IC, plain);
    const y = f32x4.add(acc, f32x4.splat(0));
    const lane = id & 3;
    store<f32>(
      vals + ((<usize>i) << 2),
      lane === 0
        ? f32x4.extract_lane(y, 0)
        : lane === 1
          ? f32x4.extract_lane(y, 1)
          : lane === 2
            ? f32x4.extract_lane(y, 2)
            : f32x4.extract_lane(y, 3),
    );
  }
}

// ---- Decode rows and the forward pass's row operations ----

/**
 * Columns [o0, o1) of out[r·OC + o] = bias[o] + Σ_c x[r·IC + c]·W[c, o] for the n rows of x, W stored [IC][OC]
 * (a Conv1D as the checkpoint holds it, read in place), bias 0 = none. Each output adds its products in channel
 * order onto the bias (one multiply-add chain), so a row gets the same bits alone or among n and
 * whatever columns the call covers. The weights stream row by row, four channels at a time, into the output
 * rows (two rows at a time share each weight vector); each weight is read once per call. o0 and o1 are
 * multiples of 4 except o1 = OC.
 */
export function linearRows(
  out: usize,
  x: usize,
  w: usize,
  bias: usize,
  n: i32,
  IC: i32,
  OC: i32,
  o0: i32,
  o1: i32,
): void {
  const rowBytes = (<usize>OC) << 2;
  // Tiles of columns whose n output rows stay in L2 (~192 KiB): up to a few rows that is the whole range,
  // so each weight row streams in one piece (a weight row cut into pieces defeats the prefetchers).
  const tile = max(16, ((49152 / n) >> 4) << 4);
  const v1 = o0 + ((o1 - o0) & ~3);
  for (let t0 = o0; t0 < o1; t0 += tile) {
    const t1 = min(o1, t0 + tile);
    const tv = min(t1, v1);
    for (let r = 0; r < n; r++) {
      const po = out + <usize>r * rowBytes;
      for (let o = t0; o < t1; o++)
        store<f32>(po + ((<usize>o) << 2), bias ? load<f32>(bias + ((<usize>o) << 2)) : 0);
    }
    let c = 0;
    for (; c + 4 <= IC; c += 4) {
      const w0 = w + <usize>c * rowBytes;
      const w1 = w0 + rowBytes;
      const w2 = w1 + rowBytes;
      const w3 = w2 + rowBytes;
      // Two rows at a time share each weight vector; every output still adds its channels in order.
      let r = 0;
      for (; r + 2 <= n; r += 2) {
        const px = x + ((<usize>(r * IC + c)) << 2);
        const py = px + ((<usize>IC) << 2);
        const x0 = v128.load32_splat(px);
        const x1 = v128.load32_splat(px, 4);
        const x2 = v128.load32_splat(px, 8);
        const x3 = v128.load32_splat(px, 12);
        const y0 = v128.load32_splat(py);
        const y1 = v128.load32_splat(py, 4);
        const y2 = v128.load32_splat(py, 8);
        const y3 = v128.load32_splat(py, 12);
        const po = out + <usize>r * rowBytes;
        const pp = po + rowBytes;
        for (let o = t0; o < tv; o += 4) {
          const off = (<usize>o) << 2;
          const a0 = v128.load(w0 + off);
          const a1 = v128.load(w1 + off);
          const a2 = v128.load(w2 + off);
          const a3 = v128.load(w3 + off);
          let a = v128.load(po + off);
          let b = v128.load(pp + off);
          a = madd(x0, a0, a);
          b = madd(y0, a0, b);
          a = madd(x1, a1, a);
          b = madd(y1, a1, b);
          a = madd(x2, a2, a);
          b = madd(y2, a2, b);
          a = madd(x3, a3, a);
          b = madd(y3, a3, b);
          v128.store(po + off, a);
          v128.store(pp + off, b);
        }
      }
      if (r < n) {
        const px = x + ((<usize>(r * IC + c)) << 2);
        const x0 = v128.load32_splat(px);
        const x1 = v128.load32_splat(px, 4);
        const x2 = v128.load32_splat(px, 8);
        const x3 = v128.load32_splat(px, 12);
        const po = out + <usize>r * rowBytes;
        for (let o = t0; o < tv; o += 4) {
          const off = (<usize>o) << 2;
          let a = v128.load(po + off);
          a = madd(x0, v128.load(w0 + off), a);
          a = madd(x1, v128.load(w1 + off), a);
          a = madd(x2, v128.load(w2 + off), a);
          a = madd(x3, v128.load(w3 + off), a);
          v128.store(po + off, a);
        }
      }
      // Columns past the last whole vector, one at a time (the same chain per output).
      for (let o = tv; o < t1; o++) {
        const off = (<usize>o) << 2;
        for (let r = 0; r < n; r++) {
          const px = x + ((<usize>(r * IC + c)) << 2);
          const po = out + <usize>r * rowBytes + off;
          let a = load<f32>(po);
          a = fmadd(load<f32>(px), load<f32>(w0 + off), a);
          a = fmadd(load<f32>(px, 4), load<f32>(w1 + off), a);
          a = fmadd(load<f32>(px, 8), load<f32>(w2 + off), a);
          a = fmadd(load<f32>(px, 12), load<f32>(w3 + off), a);
          store<f32>(po, a);
        }
      }
    }
    for (; c < IC; c++) {
      const wc = w + <usize>c * rowBytes;
      for (let r = 0; r < n; r++) {
        const xs = load<f32>(x + ((<usize>(r * IC + c)) << 2));
        const po = out + <usize>r * rowBytes;
        const xv = f32x4.splat(xs);
        for (let o = t0; o < tv; o += 4) {
          const off = (<usize>o) << 2;
          v128.store(po + off, madd(xv, v128.load(wc + off), v128.load(po + off)));
        }
        for (let o = tv; o < t1; o++) {
          const off = (<usize>o) << 2;
          store<f32>(po + off, fmadd(xs, load<f32>(wc + off), load<f32>(po + off)));
        }
      }
    }
  }
}

/** a·b + c in one lane, rounded as madd rounds it (fused in the relaxed build, two roundings otherwise). */
function fmadd(a: f32, b: f32, c: f32): f32 {
  return f32x4.extract_lane(madd(f32x4.splat(a), f32x4.splat(b), f32x4.splat(c)), 0);
}

/**
 * Σ_c h[c]·w[c] over C floats in a fixed order: four accumulators over 16 channels at a time, then four at a
 * time into the first, then the lanes (0 + 1) + (2 + 3), then the last C mod 4 channels one by one. Every
 * logit of a row-major head comes from this, so the full head and its candidates agree bit for bit.
 */
function rowDot(h: usize, w: usize, C: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let c = 0;
  for (; c + 16 <= C; c += 16) {
    const off = (<usize>c) << 2;
    a0 = madd(v128.load(h + off), v128.load(w + off), a0);
    a1 = madd(v128.load(h + off, 16), v128.load(w + off, 16), a1);
    a2 = madd(v128.load(h + off, 32), v128.load(w + off, 32), a2);
    a3 = madd(v128.load(h + off, 48), v128.load(w + off, 48), a3);
  }
  a0 = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
  for (; c + 4 <= C; c += 4) {
    const off = (<usize>c) << 2;
    a0 = madd(v128.load(h + off), v128.load(w + off), a0);
  }
  let s: f32 =
    f32x4.extract_lane(a0, 0) +
    f32x4.extract_lane(a0, 1) +
    (f32x4.extract_lane(a0, 2) + f32x4.extract_lane(a0, 3));
  for (; c < C; c++) s = fmadd(load<f32>(h + ((<usize>c) << 2)), load<f32>(w + ((<usize>c) << 2)), s);
  return s;
}

/**
 * The logits of a row-major LM head W [V][C] for rows [v0, v1): out[v] = rowDot(h, W[v]), and gmax[g] the largest
 * of each 64-row group (v0 a multiple of 64; the last group may be partial).
 */
export function headRowMajor(out: usize, gmax: usize, h: usize, w: usize, C: i32, v0: i32, v1: i32): void {
  const rowBytes = (<usize>C) << 2;
  let m: f32 = -Infinity;
  for (let v = v0; v < v1; v++) {
    const s = rowDot(h, w + <usize>v * rowBytes, C);
    store<f32>(out + ((<usize>v) << 2), s);
    m = max(m, s);
    if ((v & 63) === 63 || v === v1 - 1) {
      if (gmax) store<f32>(gmax + ((<usize>(v >> 6)) << 2), m);
      m = -Infinity;
    }
  }
}

/** vals[i] = rowDot(h, W[ids[i]]) for a row-major head: the bits headRowMajor gives those rows. */
export function headRowMajorAt(vals: usize, h: usize, w: usize, ids: usize, count: i32, C: i32): void {
  const rowBytes = (<usize>C) << 2;
  for (let i = 0; i < count; i++) {
    const v = load<i32>(ids + ((<usize>i) << 2));
    store<f32>(vals + ((<usize>i) << 2), rowDot(h, w + <usize>v * rowBytes, C));
  }
}

/** norms[v] = the Euclidean norm of row v of W [V][C] (squares summed in f64 in channel order, as a JS scan). */
export function rowNorms(norms: usize, w: usize, V: i32, C: i32): void {
  let p = w;
  for (let v = 0; v < V; v++) {
    let sum: f64 = 0;
    for (let c = 0; c < C; c++) {
      const x = <f64>load<f32>(p);
      sum += x * x;
      p += 4;
    }
    store<f64>(norms + ((<usize>v) << 3), Math.sqrt(sum));
  }
}

/**
 * out[r] = (x[r] − mean)·rstd·w + b for n rows of C floats: mean and variance summed in f64 in channel order and
 * the result computed in f64, as the JS layer norm does, so the same bits.
 */
export function layerNormRows(out: usize, x: usize, w: usize, b: usize, n: i32, C: i32, eps: f64): void {
  for (let r = 0; r < n; r++) {
    const px = x + ((<usize>(r * C)) << 2);
    const po = out + ((<usize>(r * C)) << 2);
    let m: f64 = 0;
    for (let c = 0; c < C; c++) m += <f64>load<f32>(px + ((<usize>c) << 2));
    m /= C;
    let v: f64 = 0;
    for (let c = 0; c < C; c++) {
      const d = <f64>load<f32>(px + ((<usize>c) << 2)) - m;
      v += d * d;
    }
    v /= C;
    const s = 1 / Math.sqrt(v + eps);
    const ms = f64x2.splat(m);
    const ss = f64x2.splat(s);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const off = (<usize>c) << 2;
      const xv = v128.load(px + off);
      const wv = v128.load(w + off);
      const bv = v128.load(b + off);
      const lo = f64x2.add(
        f64x2.mul(f64x2.mul(f64x2.sub(f64x2.promote_low_f32x4(xv), ms), ss), f64x2.promote_low_f32x4(wv)),
        f64x2.promote_low_f32x4(bv),
      );
      const hi = f64x2.add(
        f64x2.mul(
          f64x2.mul(f64x2.sub(f64x2.promote_low_f32x4(v128.shuffle<f32>(xv, xv, 2, 3, 0, 1)), ms), ss),
          f64x2.promote_low_f32x4(v128.shuffle<f32>(wv, wv, 2, 3, 0, 1)),
        ),
        f64x2.promote_low_f32x4(v128.shuffle<f32>(bv, bv, 2, 3, 0, 1)),
      );
      v128.store(
        po + off,
        v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5),
      );
    }
    for (; c < C; c++) {
      const off = (<usize>c) << 2;
      const y = (<f64>load<f32>(px + off) - m) * s * <f64>load<f32>(w + off) + <f64>load<f32>(b + off);
      store<f32>(po + off, <f32>y);
    }
  }
}

/** gelu_new on four lanes: 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), tanh through exp4 of −2|u| (≤ 1). */
function gelu4(x: v128): v128 {
  const u = f32x4.mul(
    f32x4.splat(0.7978845608028654),
    f32x4.add(x, f32x4.mul(f32x4.mul(f32x4.mul(f32x4.splat(0.044715), x), x), x)),
  );
  const e = exp4(f32x4.mul(f32x4.splat(-2), f32x4.abs(u)));
  const t = f32x4.div(f32x4.sub(f32x4.splat(1), e), f32x4.add(f32x4.splat(1), e));
  const th = v128.bitselect(f32x4.neg(t), t, f32x4.lt(u, f32x4.splat(0)));
  return f32x4.mul(f32x4.mul(f32x4.splat(0.5), x), f32x4.add(f32x4.splat(1), th));
}

/** out[i] = gelu_new(x[i]) for count floats (within float rounding of ops.ts's geluForward). */
export function geluRows(out: usize, x: usize, count: i32): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const off = (<usize>i) << 2;
    v128.store(out + off, gelu4(v128.load(x + off)));
  }
  for (; i < count; i++) {
    const off = (<usize>i) << 2;
    store<f32>(out + off, f32x4.extract_lane(gelu4(f32x4.splat(load<f32>(x + off))), 0));
  }
}

/** x[i] += y[i] for count floats. */
export function addRows(x: usize, y: usize, count: i32): void {
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const off = (<usize>i) << 2;
    v128.store(x + off, f32x4.add(v128.load(x + off), v128.load(y + off)));
  }
  for (; i < count; i++) {
    const off = (<usize>i) << 2;
    store<f32>(x + off, load<f32>(x + off) + load<f32>(y + off));
  }
}

/**
 * e^x on four lanes (Cephes' expf: x = n·ln 2 + r, a degree-6 polynomial for e^r, 2^n through the exponent
 * bits); inputs below −87.3 give 0.
 */
function exp4(x: v128): v128 {
  const lo = f32x4.lt(x, f32x4.splat(-87.33654));
  const xc = f32x4.max(x, f32x4.splat(-87.33654));
  const n = f32x4.nearest(f32x4.mul(xc, f32x4.splat(<f32>Math.LOG2E)));
  let r = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.1219444e-4)));
  let p = f32x4.add(f32x4.mul(f32x4.splat(1.98756915e-4), r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return v128.andnot(f32x4.mul(p, scale), lo);
}

/**
 * One query row against T cached positions, every head: out[h·hs + i] = Σ_t softmax_t(q_h·k_t·scale)·v_t[i], keys
 * and values [maxT, C] (C = NH·hs), `scores` room for T rounded up to 4 floats.
 */
export function attendRow(
  out: usize,
  q: usize,
  keys: usize,
  values: usize,
  T: i32,
  NH: i32,
  hs: i32,
  scale: f32,
  scores: usize,
): void {
  const C = NH * hs;
  const rowBytes = (<usize>C) << 2;
  const T4 = (T + 3) & ~3;
  for (let h = 0; h < NH; h++) {
    const hoff = (<usize>(h * hs)) << 2;
    const qh = q + hoff;
    let m: f32 = -Infinity;
    for (let t = 0; t < T; t++) {
      const s = rowDot(qh, keys + <usize>t * rowBytes + hoff, hs) * scale;
      store<f32>(scores + ((<usize>t) << 2), s);
      m = max(m, s);
    }
    for (let t = T; t < T4; t++) store<f32>(scores + ((<usize>t) << 2), -Infinity);
    const mv = f32x4.splat(m);
    let sv = f32x4.splat(0);
    for (let t = 0; t < T4; t += 4) {
      const p = scores + ((<usize>t) << 2);
      const e = exp4(f32x4.sub(v128.load(p), mv));
      v128.store(p, e);
      sv = f32x4.add(sv, e);
    }
    const sum =
      f32x4.extract_lane(sv, 0) +
      f32x4.extract_lane(sv, 1) +
      (f32x4.extract_lane(sv, 2) + f32x4.extract_lane(sv, 3));
    const inv: f32 = 1 / sum;
    const po = out + hoff;
    let i = 0;
    for (; i + 16 <= hs; i += 16) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let a2 = f32x4.splat(0);
      let a3 = f32x4.splat(0);
      let pv = values + hoff + ((<usize>i) << 2);
      for (let t = 0; t < T; t++) {
        const a = f32x4.splat(load<f32>(scores + ((<usize>t) << 2)) * inv);
        a0 = madd(a, v128.load(pv), a0);
        a1 = madd(a, v128.load(pv, 16), a1);
        a2 = madd(a, v128.load(pv, 32), a2);
        a3 = madd(a, v128.load(pv, 48), a3);
        pv += rowBytes;
      }
      v128.store(po + ((<usize>i) << 2), a0);
      v128.store(po + ((<usize>i) << 2), a1, 16);
      v128.store(po + ((<usize>i) << 2), a2, 32);
      v128.store(po + ((<usize>i) << 2), a3, 48);
    }
    for (; i + 4 <= hs; i += 4) {
      let a0 = f32x4.splat(0);
      let pv = values + hoff + ((<usize>i) << 2);
      for (let t = 0; t < T; t++) {
        a0 = madd(f32x4.splat(load<f32>(scores + ((<usize>t) << 2)) * inv), v128.load(pv), a0);
        pv += rowBytes;
      }
      v128.store(po + ((<usize>i) << 2), a0);
    }
    for (; i < hs; i++) {
      let a: f32 = 0;
      let pv = values + hoff + ((<usize>i) << 2);
      for (let t = 0; t < T; t++) {
        a = fmadd(load<f32>(scores + ((<usize>t) << 2)) * inv, load<f32>(pv), a);
        pv += rowBytes;
      }
      store<f32>(po + ((<usize>i) << 2), a);
    }
  }
}

/**
 * A prompt's rows [r0, r1) against their cache: row r (query at q + r·qStride floats, output at out + r·C
 * floats) attends positions [0, t0 + r] as attendRow does; `scores` room for t0 + r1 rounded up to 4 floats.
 */
export function attendRows(
  out: usize,
  q: usize,
  qStride: i32,
  keys: usize,
  values: usize,
  t0: i32,
  r0: i32,
  r1: i32,
  NH: i32,
  hs: i32,
  scale: f32,
  scores: usize,
): void {
  const C = NH * hs;
  for (let r = r0; r < r1; r++)
    attendRow(
      out + ((<usize>(r * C)) << 2),
      q + ((<usize>(r * qStride)) << 2),
      keys,
      values,
      t0 + r + 1,
      NH,
      hs,
      scale,
      scores,
    );
}

// ---- Loading: checks and packing that run once over every weight at start ----

/** Index of the first NaN or ±Infinity among n floats at p, or -1 (exponent bits all ones). */
export function firstNonFinite(p: usize, n: i32): i32 {
  const mask = i32x4.splat(0x7f800000);
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const q = p + ((<usize>i) << 2);
    const e = v128.or(
      v128.or(i32x4.eq(v128.and(v128.load(q), mask), mask), i32x4.eq(v128.and(v128.load(q, 16), mask), mask)),
      v128.or(
        i32x4.eq(v128.and(v128.load(q, 32), mask), mask),
        i32x4.eq(v128.and(v128.load(q, 48), mask), mask),
      ),
    );
    if (v128.any_true(e)) break;
  }
  for (; i < n; i++) if ((load<u32>(p + ((<usize>i) << 2)) & 0x7f800000) === 0x7f800000) return i;
  return -1;
}

/**
 * The int8 screening copy of an LM head [V, C] at w (see ScreenRows in head/screen.ts): per row, scale =
 * amax / 127 (f32) at scale[v], q = nearest(w / scale) at q's interleaved layout [V/4][C2/2][4 rows][2
 * channels]. tmp holds C + 1 bytes. stats (f64): the largest scale, Σ_c |scale·q| and |w| over the rows.
 * q and scale must be zeroed beforehand (rows of zeros, padding).
 */
export function screenPack(
  q: usize,
  scale: usize,
  w: usize,
  V: i32,
  C: i32,
  C2: i32,
  tmp: usize,
  stats: usize,
): void {
  let maxScale: f64 = 0;
  let maxL1: f64 = 0;
  let maxAbs: f64 = 0;
  const C4 = C & ~3;
  for (let v = 0; v < V; v++) {
    const row = w + ((<usize>v * <usize>C) << 2);
    let m = f32x4.splat(0);
    for (let c = 0; c < C4; c += 4) m = f32x4.max(m, f32x4.abs(v128.load(row + ((<usize>c) << 2))));
    let amax = laneMax(m);
    for (let c = C4; c < C; c++) amax = max(amax, abs(load<f32>(row + ((<usize>c) << 2))));
    if (amax === 0) continue;
    const s: f32 = amax / 127;
    const sv = f32x4.splat(s);
    for (let c = 0; c < C4; c += 4) {
      const qi = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(row + ((<usize>c) << 2)), sv)));
      const q16 = i16x8.narrow_i32x4_s(qi, qi);
      v128.store32_lane(tmp + <usize>c, i8x16.narrow_i16x8_s(q16, q16), 0);
    }
    for (let c = C4; c < C; c++)
      store<i8>(tmp + <usize>c, <i8>nearest(load<f32>(row + ((<usize>c) << 2)) / s));
    // Zero past C (an odd C's last pair), then each channel pair to its place: 2 bytes every 8.
    store<i8>(tmp + <usize>C, 0);
    const base = q + <usize>(v >> 2) * 4 * <usize>C2 + <usize>((v & 3) * 2);
    for (let c = 0; c < C; c += 2) store<u16>(base + <usize>(c << 2), load<u16>(tmp + <usize>c));
    let acc = i32x4.splat(0);
    const C16 = C & ~15;
    for (let c = 0; c < C16; c += 16)
      acc = i32x4.add(
        acc,
        i32x4.extadd_pairwise_i16x8_s(i16x8.extadd_pairwise_i8x16_s(i8x16.abs(v128.load(tmp + <usize>c)))),
      );
    let l1: i32 =
      i32x4.extract_lane(acc, 0) +
      i32x4.extract_lane(acc, 1) +
      i32x4.extract_lane(acc, 2) +
      i32x4.extract_lane(acc, 3);
    for (let c = C16; c < C; c++) {
      const x = load<i8>(tmp + <usize>c);
      l1 += x < 0 ? -x : x;
    }
    store<f32>(scale + ((<usize>v) << 2), s);
    maxScale = max(maxScale, <f64>s);
    maxL1 = max(maxL1, <f64>s * <f64>l1);
    maxAbs = max(maxAbs, <f64>amax);
  }
  store<f64>(stats, maxScale);
  store<f64>(stats, maxL1, 8);
  store<f64>(stats, maxAbs, 16);
}

/** f32 → f16 bits, to nearest even (overflow to infinity, NaN kept), as engine/formats/half.ts's f16Bits. */
function f16Bits(x: f32): u32 {
  const bits = reinterpret<u32>(x);
  const sign = (bits >> 16) & 0x8000;
  const exp = <i32>((bits >> 23) & 0xff);
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = <u32>(14 - e);
    const half = (<u32>1) << (shift - 1);
    const rest = m & (((<u32>1) << shift) - 1);
    let h = m >> shift;
    if (rest > half || (rest === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = ((<u32>e) << 10) | (mant >> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0)) h++;
  return sign | h;
}

/** x rounded to the nearest integer per lane, halves away from zero (C's roundf), as int32 lanes. */
function roundAway4(x: v128): v128 {
  const t = f32x4.trunc(x);
  const half = f32x4.ge(f32x4.abs(f32x4.sub(x, t)), f32x4.splat(0.5));
  const one = v128.or(v128.and(x, i32x4.splat(0x80000000)), f32x4.splat(1));
  return i32x4.trunc_sat_f32x4_s(f32x4.add(t, v128.and(one, half)));
}

/** One weight block: d = amax / 127 (stored as f16 bits), id = 1 / d, q = clamp(roundf(x · id), ±127). */
function q8WeightBlock(
  dst: usize,
  amax: f32,
  x0: v128,
  x1: v128,
  x2: v128,
  x3: v128,
  x4: v128,
  x5: v128,
  x6: v128,
  x7: v128,
): void {
  const d: f32 = amax / 127;
  const id = f32x4.splat(d === 0 ? 0 : <f32>1 / d);
  store<u16>(dst, <u16>f16Bits(d));
  const lo = i32x4.splat(-127);
  const hi = i32x4.splat(127);
  const q0 = i32x4.min_s(i32x4.max_s(roundAway4(f32x4.mul(x0, id)), lo), hi);
  const q1 = i32x4.min_s(i32x4.max_s(roundAway4(f32x4.mul(x1, id)), lo), hi);
  const q2 = i32x4.min_s(i32x4.max_s(roundAway4(f32x4.mul(x2, id)), lo), hi);
  const q3 = i32x4.min_s(i32x4.max_s(roundAway4(f32x4.mul(x3, id)), lo), hi);
  const q4 = i32x4.min_s(i32x4.max_s(roundAway4(f32x4.mul(x4, id)), lo), hi);
  const q5 = i32x4.min_s(i32x4.max_s(roundAway4(f32x4.mul(x5, id)), lo), hi);
  const q6 = i32x4.min_s(i32x4.max_s(roundAway4(f32x4.mul(x6, id)), lo), hi);
  const q7 = i32x4.min_s(i32x4.max_s(roundAway4(f32x4.mul(x7, id)), lo), hi);
  v128.store(dst + 2, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  v128.store(dst + 18, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q4, q5), i16x8.narrow_i32x4_s(q6, q7)));
}

/**
 * GGUF Q8_0 blocks (34 bytes: f16 scale, 32 int8) of `rows` row-major rows of `cols` floats at src (cols a
 * multiple of 32), written to dst as gguf-py quantises (see quantizeQ8_0 in formats/q8-0.ts: the same bytes).
 */
export function q8WeightRows(dst: usize, src: usize, rows: i32, cols: i32): void {
  const NB = cols / QK;
  let p = src;
  let o = dst;
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < NB; b++) {
      const x0 = v128.load(p);
      const x1 = v128.load(p, 16);
      const x2 = v128.load(p, 32);
      const x3 = v128.load(p, 48);
      const x4 = v128.load(p, 64);
      const x5 = v128.load(p, 80);
      const x6 = v128.load(p, 96);
      const x7 = v128.load(p, 112);
      q8WeightBlock(o, absMax8(x0, x1, x2, x3, x4, x5, x6, x7), x0, x1, x2, x3, x4, x5, x6, x7);
      p += 128;
      o += 34;
    }
  }
}

/**
 * The same blocks for `rows` output rows of a matrix stored transposed: src is their first column of
 * [cols, stride4] floats (a Conv1D weight [in, out]), and the blocks run along each output row. Four output rows at a time: each stored row gives a vector
 * of their four values, 4×4 transposes turn 32 of them into the four rows' blocks (in tmp, 512 bytes).
 */
export function q8WeightColumns(
  dst: usize,
  src: usize,
  rows: i32,
  stride4: i32,
  cols: i32,
  tmp: usize,
): void {
  const NB = cols / QK;
  const stride = (<usize>stride4) << 2;
  const rowBytes = <usize>NB * 34;
  const R4 = rows & ~3;
  // Sixteen output rows (one 64-byte line of each stored row) at a time, so the four quads of a block read
  // the same 32 lines while they are in cache.
  for (let r16 = 0; r16 < rows; r16 += 16) {
    const end = min(r16 + 16, rows);
    for (let b = 0; b < NB; b++) {
      for (let r = r16; r < end; r += 4) {
        const lanes = r < R4 ? 4 : rows - r;
        let p = src + <usize>b * 32 * stride + ((<usize>r) << 2);
        if (lanes === 4) {
          for (let g = 0; g < 8; g++) {
            const a = v128.load(p);
            const bb = v128.load(p + stride);
            const c = v128.load(p + 2 * stride);
            const d = v128.load(p + 3 * stride);
            const t0 = v128.shuffle<f32>(a, bb, 0, 4, 1, 5);
            const t1 = v128.shuffle<f32>(c, d, 0, 4, 1, 5);
            const t2 = v128.shuffle<f32>(a, bb, 2, 6, 3, 7);
            const t3 = v128.shuffle<f32>(c, d, 2, 6, 3, 7);
            const o = tmp + ((<usize>g) << 4);
            v128.store(o, v128.shuffle<f32>(t0, t1, 0, 1, 4, 5));
            v128.store(o, v128.shuffle<f32>(t0, t1, 2, 3, 6, 7), 128);
            v128.store(o, v128.shuffle<f32>(t2, t3, 0, 1, 4, 5), 256);
            v128.store(o, v128.shuffle<f32>(t2, t3, 2, 3, 6, 7), 384);
            p += stride << 2;
          }
        } else {
          for (let i = 0; i < 32; i++) {
            for (let j = 0; j < lanes; j++)
              store<f32>(tmp + <usize>(j * 128 + i * 4), load<f32>(p + ((<usize>j) << 2)));
            p += stride;
          }
        }
        for (let j = 0; j < lanes; j++)
          q8WeightRows(dst + <usize>(r + j) * rowBytes + <usize>b * 34, tmp + <usize>(j * 128), 1, 32);
      }
    }
  }
}

/** The value of f16 bits h as f32 (exact), as engine/formats/half.ts's halfToFloat. */
function halfToFloat(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) {
    const v = <f32>mant * <f32>5.9604644775390625e-8; // 2^-24, exact
    return reinterpret<f32>(sign | reinterpret<u32>(v));
  }
  if (exp === 0x1f) return reinterpret<f32>(sign | 0x7f800000 | (mant << 13));
  return reinterpret<f32>(sign | ((exp + 112) << 23) | (mant << 13));
}

/**
 * Packs `count` rows, from row r0, of a [rows, cols] matrix's GGUF Q8_0 blocks (at blocks, the first of row r0)
 * into the layout the q8 products read (see Q8Matrix in formats/q8-0.ts): int8 [rows/4][NB][8 groups][4 rows]
 * [4 bytes] at q, scales [rows/4][NB][4 rows] as f32 at d. Returns 1 when a weight is −128, else 0.
 */
export function q8PackBlocks(q: usize, d: usize, blocks: usize, r0: i32, count: i32, NB: i32): i32 {
  let wide = i8x16.splat(0);
  const m128 = i8x16.splat(-128);
  let at = blocks;
  for (let r = r0; r < r0 + count; r++) {
    const quad = <usize>(r >> 2);
    const lane = <usize>(r & 3);
    for (let b = 0; b < NB; b++) {
      const qb = quad * <usize>NB + <usize>b;
      store<f32>(d + ((qb * 4 + lane) << 2), halfToFloat(<u32>load<u16>(at)));
      const lo = v128.load(at + 2);
      const hi = v128.load(at + 18);
      wide = v128.or(wide, v128.or(i8x16.eq(lo, m128), i8x16.eq(hi, m128)));
      const base = q + qb * 128 + lane * 4;
      for (let g = 0; g < 8; g++) store<u32>(base + <usize>(g * 16), load<u32>(at + 2 + <usize>(g * 4)));
      at += 34;
    }
  }
  return v128.any_true(wide) ? 1 : 0;
}
