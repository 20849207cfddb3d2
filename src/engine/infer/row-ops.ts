// The forward pass's row operations besides the products: layer norm, GELU, residual add, one query's attention.
import { geluForward, layernormForward } from '../ops.js';
import type { WasmArena } from '../wasm/runtime.js';
import { SplitCall } from '../wasm/threads.js';

/** The forward pass's row operations; buffers are plain arrays or views of WebAssembly memory alike. */
export interface RowOps {
  /** out[n, C] = LayerNorm(inp[n, C])·w + b. */
  layerNorm(
    out: Float32Array,
    inp: Float32Array,
    w: Float32Array,
    b: Float32Array,
    n: number,
    C: number,
    eps: number,
  ): void;
  /** out[i] = gelu_new(inp[i]) for i < count. */
  gelu(out: Float32Array, inp: Float32Array, count: number): void;
  /** x[i] += y[i] for i < count. */
  add(x: Float32Array, y: Float32Array, count: number): void;
  /**
   * A prompt's n rows against their cache: row r (query at q[r·3C], the qkv buffer's layout) attends positions
   * [0, t0 + r] into out[r·C]: attend() for each row.
   */
  attendPrompt(
    out: Float32Array,
    q: Float32Array,
    keys: Float32Array,
    values: Float32Array,
    t0: number,
    n: number,
    NH: number,
    hs: number,
  ): void;
  /**
   * One query row against T cached positions, every head: out[o + h·hs + i] = Σ_t softmax_t(q_h·k_t/√hs)·v_t[i],
   * with q at q[qOff + h·hs], k_t and v_t at row t of keys/values [maxT, C].
   */
  attend(
    out: Float32Array,
    o: number,
    q: Float32Array,
    qOff: number,
    keys: Float32Array,
    values: Float32Array,
    T: number,
    NH: number,
    hs: number,
  ): void;
}

/** The reference row operations in plain loops (what ops.ts computes for training). */
export class JsRowOps implements RowOps {
  private mean: Float32Array;
  private rstd: Float32Array;
  private scores: Float32Array;

  constructor(maxRows: number, maxT: number) {
    this.mean = new Float32Array(maxRows);
    this.rstd = new Float32Array(maxRows);
    this.scores = new Float32Array(maxT);
  }

  layerNorm(
    out: Float32Array,
    inp: Float32Array,
    w: Float32Array,
    b: Float32Array,
    n: number,
    C: number,
    eps: number,
  ): void {
    layernormForward(out, this.mean, this.rstd, inp, w, b, n, C, eps);
  }

  gelu(out: Float32Array, inp: Float32Array, count: number): void {
    geluForward(out, inp, count);
  }

  attendPrompt(
    out: Float32Array,
    q: Float32Array,
    keys: Float32Array,
    values: Float32Array,
    t0: number,
    n: number,
    NH: number,
    hs: number,
  ): void {
    const C = NH * hs;
    for (let r = 0; r < n; r++) this.attend(out, r * C, q, r * 3 * C, keys, values, t0 + r + 1, NH, hs);
  }

  add(x: Float32Array, y: Float32Array, count: number): void {
    for (let i = 0; i < count; i++) x[i] += y[i];
  }

  attend(
    out: Float32Array,
    o: number,
    q: Float32Array,
    qOff: number,
    keys: Float32Array,
    values: Float32Array,
    T: number,
    NH: number,
    hs: number,
  ): void {
    const C = NH * hs;
    const scale = 1 / Math.sqrt(hs);
    const scores = this.scores;
    for (let h = 0; h < NH; h++) {
      const qh = qOff + h * hs;
      let max = Number.NEGATIVE_INFINITY;
      for (let t = 0; t < T; t++) {
        const k = t * C + h * hs;
        let s = 0;
        for (let i = 0; i < hs; i++) s += q[qh + i] * keys[k + i];
        s *= scale;
        scores[t] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let t = 0; t < T; t++) {
        const e = Math.exp(scores[t] - max);
        scores[t] = e;
        sum += e;
      }
      const inv = 1 / sum;
      const oh = o + h * hs;
      for (let i = 0; i < hs; i++) out[oh + i] = 0;
      for (let t = 0; t < T; t++) {
        const a = scores[t] * inv;
        const v = t * C + h * hs;
        for (let i = 0; i < hs; i++) out[oh + i] += a * values[v + i];
      }
    }
  }
}

/** Threads a prompt's attention may use (one scores buffer each). */
const MAX_THREADS = 8;

/** The same row operations in the WebAssembly kernels (every buffer a view of the arena's memory). */
export class WasmRowOps implements RowOps {
  private readonly scoresPtr: number;
  private readonly scoresBytes: number;
  /** The prompt attention in progress, split between threads by rows. */
  private readonly call = { out: 0, q: 0, keys: 0, values: 0, t0: 0, NH: 0, hs: 0 };
  private readonly split: SplitCall;

  constructor(
    private readonly arena: WasmArena,
    maxT: number,
    owner: object,
  ) {
    this.scoresBytes = (Math.ceil(maxT / 4) * 4 + 4) * 4;
    const bytes = this.scoresBytes * MAX_THREADS;
    this.scoresPtr = arena.alloc(bytes);
    arena.freeWith(owner, this.scoresPtr, bytes);
    const c = this.call;
    const k = arena.kernels;
    this.split = new SplitCall(
      'attendRows',
      (a, from, to, piece) => {
        a[0] = c.out;
        a[1] = c.q;
        a[2] = 3 * c.NH * c.hs;
        a[3] = c.keys;
        a[4] = c.values;
        a[5] = c.t0;
        a[6] = from;
        a[7] = to;
        a[8] = c.NH;
        a[9] = c.hs;
        a[10] = 1 / Math.sqrt(c.hs);
        a[11] = this.scoresPtr + (piece % MAX_THREADS) * this.scoresBytes;
        return 12;
      },
      (from, to) =>
        k.attendRows(
          c.out,
          c.q,
          3 * c.NH * c.hs,
          c.keys,
          c.values,
          c.t0,
          from,
          to,
          c.NH,
          c.hs,
          1 / Math.sqrt(c.hs),
          this.scoresPtr,
        ),
    );
  }

  attendPrompt(
    out: Float32Array,
    q: Float32Array,
    keys: Float32Array,
    values: Float32Array,
    t0: number,
    n: number,
    NH: number,
    hs: number,
  ): void {
    const c = this.call;
    c.out = out.byteOffset;
    c.q = q.byteOffset;
    c.keys = keys.byteOffset;
    c.values = values.byteOffset;
    c.t0 = t0;
    c.NH = NH;
    c.hs = hs;
    // Later rows attend more positions: the pieces differ in work, not in results.
    this.split.run(this.arena.memory, n, 1, n * (t0 + n) * NH * hs >= 1 << 20);
  }

  layerNorm(
    out: Float32Array,
    inp: Float32Array,
    w: Float32Array,
    b: Float32Array,
    n: number,
    C: number,
    eps: number,
  ): void {
    this.arena.kernels.layerNormRows(out.byteOffset, inp.byteOffset, w.byteOffset, b.byteOffset, n, C, eps);
  }

  gelu(out: Float32Array, inp: Float32Array, count: number): void {
    this.arena.kernels.geluRows(out.byteOffset, inp.byteOffset, count);
  }

  add(x: Float32Array, y: Float32Array, count: number): void {
    this.arena.kernels.addRows(x.byteOffset, y.byteOffset, count);
  }

  attend(
    out: Float32Array,
    o: number,
    q: Float32Array,
    qOff: number,
    keys: Float32Array,
    values: Float32Array,
    T: number,
    NH: number,
    hs: number,
  ): void {
    this.arena.kernels.attendRow(
      out.byteOffset + o * 4,
      q.byteOffset + qOff * 4,
      keys.byteOffset,
      values.byteOffset,
      T,
      NH,
      hs,
      1 / Math.sqrt(hs),
      this.scoresPtr,
    );
  }
}
