// The int8 screen: every row scored from an int8 copy of the head with a bounded error, f32 logits only for
// the rows that can still be among the k largest.
import { PARALLEL_MIN_MACS } from '../formats/f32.js';
import type { WasmArena } from '../wasm/runtime.js';
import { SplitCall } from '../wasm/threads.js';
import type { FullHead } from './full.js';
import { TOP_GROUP } from './group-top.js';
import type { LmHead } from './lm-head.js';

/** Vocabularies from this size get an int8 screening head (below it the f32 head is cheap anyway). */
export const SCREEN_MIN_VOCAB = 4096;

/**
 * An int8 copy of the LM head (one scale per row) in WebAssembly memory. Byte offsets; rows padded to whole
 * 64-row groups, channels to C2 = C rounded up to even (zeros).
 */
export interface ScreenRows {
  /** int8 [rows/4][C2/2][4 rows][2 channels]. */
  q: number;
  /** f32 [rows]: w[v, c] ≈ scale[v]·q[v, c] with |error| ≤ scale[v]/2. */
  scale: number;
  groups: number;
  C2: number;
  /** Largest row scale. */
  maxScale: number;
  /** Largest Σ_c |scale[v]·q[v, c]| over the rows. */
  maxL1: number;
  /** Largest |w[v, c]|. */
  maxAbs: number;
}

/**
 * Largest |m[c]| of the int16 input: 127·|m|·C2 must stay below 2^31 so the kernel's int32 sums are exact
 * (32767 up to C2 = 516; less for wider models).
 */
export function screenInputMax(C2: number): number {
  return Math.min(32767, Math.floor((2 ** 31 - 1) / (127 * C2)));
}

/** Rows per screenPack call: calls short enough that V8 compiles the kernel optimised after the first few. */
const PACK_ROWS = 1024;

/** Quantises the head [V, C] (in `arena`) row by row into `arena` (see ScreenRows); `owner` frees it when collected. */
export function packScreenRows(
  arena: WasmArena,
  w: Float32Array,
  V: number,
  C: number,
  owner: object | null,
): ScreenRows {
  if (!arena.owns(w)) throw new Error("the int8 screen packs a head that lies in the kernels' memory");
  const groups = Math.ceil(V / TOP_GROUP);
  const rows = groups * TOP_GROUP;
  const C2 = C + (C & 1);
  const alloc = (bytes: number): number => {
    const ptr = arena.alloc(bytes);
    if (owner) arena.freeWith(owner, ptr, bytes);
    return ptr;
  };
  const qPtr = alloc(rows * C2);
  const scalePtr = alloc(rows * 4);
  arena.i8(qPtr, rows * C2).fill(0);
  arena.f32(scalePtr, rows).fill(0);
  const scratchBytes = 24 + C + 1;
  const scratch = arena.alloc(scratchBytes);
  let maxScale = 0;
  let maxL1 = 0;
  let maxAbs = 0;
  try {
    const stats = arena.f64(scratch, 3);
    // PACK_ROWS is a multiple of 4: each call starts a new group of four rows.
    for (let v = 0; v < V; v += PACK_ROWS) {
      arena.kernels.screenPack(
        qPtr + (v >> 2) * 4 * C2,
        scalePtr + v * 4,
        w.byteOffset + v * C * 4,
        Math.min(PACK_ROWS, V - v),
        C,
        C2,
        scratch + 24,
        scratch,
      );
      maxScale = Math.max(maxScale, stats[0]);
      maxL1 = Math.max(maxL1, stats[1]);
      maxAbs = Math.max(maxAbs, stats[2]);
    }
  } finally {
    arena.free(scratch, scratchBytes);
  }
  return { q: qPtr, scale: scalePtr, groups, C2, maxScale, maxL1, maxAbs };
}

/**
 * Screens every row from the int8 copy, then computes in f32 (through the full head's own kernel chain,
 * so the values are bit-identical) only the rows that can be among the k largest: every row's score a[v] is
 * within E of its logit (E bounds the weights' and the input's rounding and the float slack), so with T the
 * k-th largest group maximum of the scores, k rows have logits ≥ T − E and no row scoring below T − 2E can
 * be among the top k.
 */
export class ScreenedHead implements LmHead {
  readonly name = 'int8-screen';
  private readonly C: number;
  private readonly rowsPad: number;
  private readonly approxPtr: number;
  private readonly rowApprox: Float32Array[];
  private readonly gmaxPtr: number;
  private readonly rowGmax: Float32Array[];
  private readonly inPtr: number;
  private readonly rowIn: Int16Array[];
  /** The rows' input scales as the kernel takes them (f32, in the arena). */
  private readonly inScales: Float32Array;
  private readonly errs: Float64Array;
  /** 1 when row r was screened (finite, non-zero input). */
  private readonly screened: Uint8Array;
  private readonly exactPtr: number;
  private candidates = 0;
  lastSource: LmHead['name'] | 'none' = 'none';
  /** The screening call in progress (rows [first, first + n)), split between threads by 64-row groups. */
  private readonly call = { first: 0, n: 0 };
  private readonly split: SplitCall;

  constructor(
    private readonly arena: WasmArena,
    readonly screen: ScreenRows,
    private readonly full: FullHead,
    owner: object,
  ) {
    this.C = full.matrix.nEmbd;
    const capacity = full.capacity;
    const { groups, C2 } = screen;
    this.rowsPad = groups * TOP_GROUP;
    const alloc = (bytes: number): number => {
      const ptr = arena.alloc(bytes);
      arena.freeWith(owner, ptr, bytes);
      return ptr;
    };
    this.approxPtr = alloc(capacity * this.rowsPad * 4);
    this.gmaxPtr = alloc(capacity * groups * 4);
    this.inPtr = alloc(capacity * C2 * 2);
    this.exactPtr = alloc(this.rowsPad * 4);
    this.rowApprox = [];
    this.rowGmax = [];
    this.rowIn = [];
    for (let r = 0; r < capacity; r++) {
      this.rowApprox.push(arena.f32(this.approxPtr + r * this.rowsPad * 4, this.rowsPad));
      this.rowGmax.push(arena.f32(this.gmaxPtr + r * groups * 4, groups));
      const m = arena.i16(this.inPtr + r * C2 * 2, C2);
      m.fill(0);
      this.rowIn.push(m);
    }
    const c = this.call;
    const { q, scale } = screen;
    const k = arena.kernels;
    const G = groups;
    const stride = this.rowsPad;
    // Groups [from, to) of rows [first, first + n): the pointers each piece starts from.
    const out = (from: number) => this.approxPtr + (c.first * stride + from * TOP_GROUP) * 4;
    const gmax = (from: number) => this.gmaxPtr + (c.first * G + from) * 4;
    const h = () => this.inPtr + c.first * C2 * 2;
    const hs = () => this.inScales.byteOffset + c.first * 4;
    this.split = new SplitCall(
      'screenHead',
      (a, from, to) => {
        a[0] = out(from);
        a[1] = gmax(from);
        a[2] = q + from * TOP_GROUP * C2;
        a[3] = scale + from * TOP_GROUP * 4;
        a[4] = h();
        a[5] = hs();
        a[6] = c.n;
        a[7] = to - from;
        a[8] = C2;
        a[9] = stride;
        a[10] = G;
        a[11] = C2;
        return 12;
      },
      (from, to) =>
        k.screenHead(
          out(from),
          gmax(from),
          q + from * TOP_GROUP * C2,
          scale + from * TOP_GROUP * 4,
          h(),
          hs(),
          c.n,
          to - from,
          C2,
          stride,
          G,
          C2,
        ),
    );
    this.inScales = arena.f32(alloc(capacity * 4), capacity);
    this.errs = new Float64Array(capacity);
    this.screened = new Uint8Array(capacity);
  }

  get topLimit(): number {
    return this.screen.groups;
  }

  get lastCandidates(): number {
    return this.candidates;
  }

  score(h: Float32Array, n: number): void {
    this.full.score(h, n);
    const { C, screen: sh } = this;
    const mMax = screenInputMax(sh.C2);
    for (let r = 0; r < n; r++) {
      this.screened[r] = 0;
      let hmax = 0;
      let l1 = 0;
      let finite = true;
      for (let c = r * C; c < (r + 1) * C; c++) {
        const a = Math.abs(h[c]);
        if (!(a <= Number.MAX_VALUE)) finite = false;
        if (a > hmax) hmax = a;
        l1 += a;
      }
      // A row that cannot be screened is scored anyway (zero input) and answered by the full head.
      const hScale = finite && hmax > 0 ? hmax / mMax : 0;
      const m = this.rowIn[r];
      for (let c = 0; c < C; c++) m[c] = hScale > 0 ? Math.round(h[r * C + c] / hScale) : 0;
      this.inScales[r] = hScale;
      this.errs[r] =
        0.5 * sh.maxScale * l1 +
        0.5 * hScale * sh.maxL1 +
        2 ** -20 * (C + 8) * (sh.maxAbs * l1 + sh.maxL1 * hmax);
      this.screened[r] = hScale > 0 ? 1 : 0;
    }
    // One pass over the int8 head for every row.
    this.call.first = 0;
    this.call.n = n;
    this.split.run(this.arena.memory, sh.groups, 1, n * sh.groups * TOP_GROUP * sh.C2 >= PARALLEL_MIN_MACS);
  }

  top(r: number, k: number, ids: Int32Array, values: Float64Array): boolean {
    const search = this.full.search;
    if (!search || !this.screened[r] || k < 1 || k > this.screen.groups || !this.full.matrix.finite) {
      const ok = this.full.top(r, k, ids, values);
      this.candidates = this.full.lastCandidates;
      this.lastSource = this.full.lastSource;
      return ok;
    }
    const approx = this.rowApprox[r];
    const gmax = this.rowGmax[r];
    search.fixLastGroup(approx, gmax);
    const cut = search.kthGroupMax(gmax.byteOffset, k) - 2 * this.errs[r];
    const n = search.collect(approx.byteOffset, gmax.byteOffset, cut);
    if (n < k) {
      const ok = this.full.top(r, k, ids, values);
      this.candidates = this.full.lastCandidates;
      this.lastSource = this.full.lastSource;
      return ok;
    }
    this.full.rows(r, search.candPtr, n, this.exactPtr);
    search.take(this.exactPtr, n, k, ids, values);
    this.candidates = n;
    this.lastSource = 'int8-screen';
    return true;
  }

  logits(r: number): Float32Array {
    return this.full.logits(r);
  }
}
