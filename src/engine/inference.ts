// KV-cache inference: batched prefill of a prompt, then one-token steps; every buffer is allocated once.
import { type GPTConfig, validateConfig } from './config.js';
import { type ModelViews, modelViews, parameterLayout } from './layout.js';
import { matmulForward, matmulTransposedForward } from './matmul.js';
import { geluForward, layernormForward } from './ops.js';
import { type WasmArena, wasmArena } from './wasm/runtime.js';

/** LM-head rows packed per WebAssembly block (see lmHead in wasm/assembly/kernels.ts). */
const HEAD_BLOCK = 16;
/** Bytes of LM-head rows packHeadRows takes per call (see packFullHead). */
const PACK_CHUNK_BYTES = 256 * 1024;

/** The LM head copied into WebAssembly memory as [V/16][C][16] blocks (zero rows pad the last block). */
interface PackedHead {
  arena: WasmArena;
  ptr: number;
  blocks: number;
}

/** Where a packed LM head lies in a shared WebAssembly memory: what another thread needs to use it as is. */
export interface SharedHead {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ptr: number;
  blocks: number;
  /** The hot rows packed in the same memory, found once by the thread that shared the head (see HotHead). */
  hot?: HotHead | null;
  /** The int8 screening copy of the head in the same memory (see ScreenHead). */
  screen?: ScreenHead | null;
}

/**
 * The few LM-head rows that carry a model trained on part of the vocabulary (restricted-softmax training
 * leaves every other row near its small initialisation), packed like the full head, with the largest norm
 * among the other rows: ||h||·coldMaxNorm bounds every logit the hot rows leave out (Cauchy–Schwarz).
 */
export interface HotHead {
  /** Vocabulary ids of the hot rows, ascending (so ties still go to the lower id). */
  ids: Int32Array;
  ptr: number;
  blocks: number;
  coldMaxNorm: number;
}

/** Rows per group of logits whose maximum the head kernel records (GROUP in the kernels). */
const TOP_GROUP = 64;
/** Vocabularies from this size get an int8 screening head (below it the f32 head is cheap anyway). */
const SCREEN_MIN_VOCAB = 4096;
/** Widest model the screening head takes: int32 sums of 127·|m|·C stay exact with |m| up to 32767. */
const SCREEN_MAX_EMBD = 512;

/**
 * An int8 copy of the LM head (one scale per row) in WebAssembly memory, for decode with top-k or greedy
 * sampling: every row is scored from it with exact integer sums and a bounded error, and only rows that can
 * still be among the k largest get their f32 logit (see InferenceSession.screenedTop). Byte offsets; rows
 * padded to whole 64-row groups, channels to C2 = C rounded up to even (zeros).
 */
export interface ScreenHead {
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

/** Quantises the head [V, C] row by row into `arena` (see ScreenHead); `owner` frees it when collected. */
function packScreenHead(
  arena: WasmArena,
  w: Float32Array,
  V: number,
  C: number,
  owner: object | null,
): ScreenHead {
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
  const q = arena.i8(qPtr, rows * C2);
  const scale = arena.f32(scalePtr, rows);
  q.fill(0);
  scale.fill(0);
  let maxScale = 0;
  let maxL1 = 0;
  let maxAbs = 0;
  for (let v = 0; v < V; v++) {
    const row = v * C;
    let amax = 0;
    for (let c = 0; c < C; c++) amax = Math.max(amax, Math.abs(w[row + c]));
    if (amax === 0) continue;
    const s = amax / 127;
    let l1 = 0;
    const base = (v >> 2) * 4 * C2 + (v & 3) * 2;
    for (let c = 0; c < C; c++) {
      const qc = Math.max(-127, Math.min(127, Math.round(w[row + c] / s)));
      q[base + (c >> 1) * 8 + (c & 1)] = qc;
      l1 += Math.abs(qc);
    }
    scale[v] = s;
    // The kernel multiplies by the float32 scale: bound with what it uses.
    maxScale = Math.max(maxScale, scale[v], s);
    maxL1 = Math.max(maxL1, scale[v] * l1);
    maxAbs = Math.max(maxAbs, amax);
  }
  return { q: qPtr, scale: scalePtr, groups, C2, maxScale, maxL1, maxAbs };
}

/** A session's buffers for topLogits in WebAssembly memory (byte offsets and views). */
interface TopScratch {
  groups: number;
  gmaxPtr: number;
  gmax: Float32Array;
  candPtr: number;
  cand: Int32Array;
  candValsPtr: number;
  topIdsPtr: number;
  topIds: Int32Array;
  topValsPtr: number;
  topVals: Float32Array;
}

/**
 * The padding rows of the last 64-row group (ids ≥ V) score 0 in the kernels: that group's maximum is set from
 * its real rows, so padding never raises the cut (it would only cost a fallback, never a wrong token).
 */
function realLastGroupMax(top: TopScratch, scores: Float32Array, V: number): void {
  const last = (top.groups - 1) * TOP_GROUP;
  if (last + TOP_GROUP <= V) return;
  let m = Number.NEGATIVE_INFINITY;
  for (let v = last; v < V; v++) if (scores[v] > m) m = scores[v];
  top.gmax[top.groups - 1] = m;
}

function topScratch(arena: WasmArena, groups: number, owner: object): TopScratch {
  const rows = groups * TOP_GROUP;
  const alloc = (bytes: number): number => {
    const ptr = arena.alloc(bytes);
    arena.freeWith(owner, ptr, bytes);
    return ptr;
  };
  const gmaxPtr = alloc(groups * 4);
  const candPtr = alloc(rows * 4);
  const candValsPtr = alloc(rows * 4);
  const topIdsPtr = alloc(groups * 4);
  const topValsPtr = alloc(groups * 4);
  return {
    groups,
    gmaxPtr,
    gmax: arena.f32(gmaxPtr, groups),
    candPtr,
    cand: arena.i32(candPtr, rows),
    candValsPtr,
    topIdsPtr,
    topIds: arena.i32(topIdsPtr, groups),
    topValsPtr,
    topVals: arena.f32(topValsPtr, groups),
  };
}

/** A session's buffers for screenedTop in WebAssembly memory (byte offsets and views). */
interface ScreenScratch {
  head: ScreenHead;
  approxPtr: number;
  approx: Float32Array;
  hPtr: number;
  h: Int16Array;
  exactPtr: number;
}

function screenScratch(arena: WasmArena, head: ScreenHead, owner: object): ScreenScratch {
  const rows = head.groups * TOP_GROUP;
  const alloc = (bytes: number): number => {
    const ptr = arena.alloc(bytes);
    arena.freeWith(owner, ptr, bytes);
    return ptr;
  };
  const approxPtr = alloc(rows * 4);
  const hPtr = alloc(head.C2 * 2);
  const exactPtr = alloc(rows * 4);
  const h = arena.i16(hPtr, head.C2);
  h.fill(0);
  return { head, approxPtr, approx: arena.f32(approxPtr, rows), hPtr, h, exactPtr };
}

/** One layer's Conv1D weights and biases copied into WebAssembly memory for decode (byte offsets). */
interface DecodeLayer {
  qkvw: number;
  qkvb: number;
  attprojw: number;
  attprojb: number;
  fcw: number;
  fcb: number;
  fcprojw: number;
  fcprojb: number;
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

/** A hot set must be this much larger in norm than every row it leaves out. */
const HOT_NORM_RATIO = 3;

/**
 * Finds the hot rows: the widest gap (ratio ≥ HOT_NORM_RATIO) in the sorted row norms that keeps at most
 * half the vocabulary above it. Null when the rows show no such gap (a model trained on every token).
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

export interface InferenceWeightsOptions {
  /**
   * 'share': pack the LM head for other threads too (see sharedHead); it is then never freed, as other
   * threads may read it for as long as the memory lives. A SharedHead: use that packed head (this thread's
   * arena must be over its memory, see adoptWasmMemory) instead of packing one, and its hot rows when it
   * carries them (instead of scanning the head's norms again).
   */
  head?: 'share' | SharedHead;
}

/** Read-only weights shared by any number of sessions (e.g. one per request). */
export class InferenceWeights {
  readonly config: Readonly<GPTConfig>;
  readonly views: ModelViews;
  readonly params: Float32Array;
  /** The LM head inside WebAssembly memory, or null on the pure-JS path. */
  readonly packedHead: PackedHead | null;
  /** The hot rows of the LM head when the model has them (WebAssembly path only), see HotHead. */
  hotHead: HotHead | null;
  /** Every layer's products in WebAssembly memory, for one-token steps (null on the pure-JS path). */
  readonly decodeLayers: DecodeLayer[] | null;

  constructor(config: GPTConfig, params: Float32Array, options: InferenceWeightsOptions = {}) {
    this.config = validateConfig(config);
    const layout = parameterLayout(this.config);
    if (params.length !== layout.total) {
      throw new Error(`parameter buffer has ${params.length} floats, the config needs ${layout.total}`);
    }
    this.params = params;
    this.views = modelViews(layout, params, this.config.nLayer);
    const arena = wasmArena();
    const { vocabSize: V, nEmbd: C } = this.config;
    const blocks = Math.ceil(V / HEAD_BLOCK);
    /** The hot rows, when this constructor packed the head (its pass finds them from the norms it computes). */
    let hot: { ids: Int32Array; coldMaxNorm: number } | null | undefined;
    const given = typeof options.head === 'object' ? options.head : null;
    const adopted = !!arena && !!given && arena.memory === given.memory && given.blocks === blocks;
    if (arena && given && adopted) {
      this.packedHead = { arena, ptr: given.ptr, blocks };
    } else if (arena) {
      const bytes = blocks * HEAD_BLOCK * C * 4;
      const ptr = arena.alloc(bytes);
      if (options.head !== 'share') arena.freeWith(this, ptr, bytes);
      this.packedHead = { arena, ptr, blocks };
      hot = this.packFullHead(ptr);
    } else {
      this.packedHead = null;
    }
    this.decodeLayers = null;
    if (arena && this.packedHead) {
      const copy = (a: Float32Array): number => {
        const ptr = arena.alloc(a.length * 4);
        arena.freeWith(this, ptr, a.length * 4);
        arena.f32(ptr, a.length).set(a);
        return ptr;
      };
      this.decodeLayers = this.views.layers.map((l) => ({
        qkvw: copy(l.qkvw),
        qkvb: copy(l.qkvb),
        attprojw: copy(l.attprojw),
        attprojb: copy(l.attprojb),
        fcw: copy(l.fcw),
        fcb: copy(l.fcb),
        fcprojw: copy(l.fcprojw),
        fcprojb: copy(l.fcprojb),
      }));
    }
    this.hotHead = null;
    if (adopted && given.hot !== undefined) {
      // The sharing thread already found and packed the hot rows (and the screening head) in this memory.
      this.hotHead = given.hot;
      this.screenHead = given.screen ?? null;
      return;
    }
    if (hot === undefined) hot = this.packedHead ? findHotRows(this.views.lmHead, V, C) : null;
    if (arena && hot) {
      const hotBlocks = Math.ceil(hot.ids.length / HEAD_BLOCK);
      const bytes = hotBlocks * HEAD_BLOCK * C * 4;
      const ptr = arena.alloc(bytes);
      if (options.head !== 'share') arena.freeWith(this, ptr, bytes);
      this.hotHead = { ids: hot.ids, ptr, blocks: hotBlocks, coldMaxNorm: hot.coldMaxNorm };
      this.packRows(hot.ids, ptr, hotBlocks);
    } else if (arena && this.packedHead && V >= SCREEN_MIN_VOCAB && C <= SCREEN_MAX_EMBD) {
      const owner = options.head === 'share' ? null : this;
      this.screenHead = packScreenHead(arena, this.views.lmHead, V, C, owner);
    }
  }

  /** The int8 screening head (large vocabularies without hot rows, WebAssembly path only), see ScreenHead. */
  screenHead: ScreenHead | null = null;

  private finiteHead: boolean | null = null;

  /** Whether every LM-head weight is finite (then finite inputs give logits without NaN); checked once. */
  get headIsFinite(): boolean {
    if (this.finiteHead === null) {
      const w = this.views.lmHead;
      let ok = true;
      for (let i = 0; i < w.length && ok; i++) ok = Number.isFinite(w[i]);
      this.finiteHead = ok;
    }
    return this.finiteHead;
  }

  /** Number of hot LM-head rows (0 when the model has none or the pure-JS path runs). */
  get hotVocabSize(): number {
    return this.hotHead ? this.hotHead.ids.length : 0;
  }

  /**
   * Packs the given vocabulary rows into [blocks][C][16] at ptr (zero rows pad the last block) by gathering
   * them from the packed full head (packHeadSubset: the same floats), or the whole head when rows is null.
   */
  private packRows(rows: Int32Array | null, ptr: number, blocks: number): void {
    const head = this.packedHead;
    if (!head) return;
    if (!rows) {
      this.packFullHead(ptr, false);
      return;
    }
    if (Math.ceil(rows.length / HEAD_BLOCK) !== blocks)
      throw new RangeError('packRows: block count mismatch');
    const { arena } = head;
    const bytes = Math.max(4, rows.length * 4);
    const idsPtr = arena.alloc(bytes);
    try {
      arena.i32(idsPtr, rows.length).set(rows);
      arena.kernels.packHeadSubset(ptr, head.ptr, idsPtr, rows.length, this.config.nEmbd);
    } finally {
      arena.free(idsPtr, bytes);
    }
  }

  /**
   * Packs the whole head into [blocks][C][16] at ptr with the packHeadRows kernel, which also sums each row's
   * norm (f64, the same bits as a JS scan), then finds the hot rows from those norms with the hotRows kernel
   * (what findHotRows computes) unless `findHot` is false. A chunk of rows at a time is copied into
   * WebAssembly memory unless the head is there already.
   */
  private packFullHead(ptr: number, findHot = true): { ids: Int32Array; coldMaxNorm: number } | null {
    const { vocabSize: V, nEmbd: C } = this.config;
    const arena = this.packedHead?.arena;
    if (!arena) return null;
    const w = this.views.lmHead;
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
        arena.kernels.packHeadRows(ptr + r0 * C * 4, src, rows, C, scratch + normsAt + r0 * 8);
      }
      if (!findHot) return null;
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

  /** The packed head as another thread can adopt it (null on the pure-JS path). */
  get sharedHead(): SharedHead | null {
    const head = this.packedHead;
    if (!head) return null;
    return {
      module: head.arena.module,
      memory: head.arena.memory,
      ptr: head.ptr,
      blocks: head.blocks,
      hot: this.hotHead,
      screen: this.screenHead,
    };
  }

  /**
   * Copies the LM head and the layers' decode weights into WebAssembly memory again. The copies are taken at
   * construction; call this after changing the parameters in place (e.g. sampling between training steps).
   */
  repackHead(): void {
    const head = this.packedHead;
    if (!head) return;
    this.packRows(null, head.ptr, head.blocks);
    const arena = head.arena;
    this.decodeLayers?.forEach((d, i) => {
      const l = this.views.layers[i];
      arena.f32(d.qkvw, l.qkvw.length).set(l.qkvw);
      arena.f32(d.qkvb, l.qkvb.length).set(l.qkvb);
      arena.f32(d.attprojw, l.attprojw.length).set(l.attprojw);
      arena.f32(d.attprojb, l.attprojb.length).set(l.attprojb);
      arena.f32(d.fcw, l.fcw.length).set(l.fcw);
      arena.f32(d.fcb, l.fcb.length).set(l.fcb);
      arena.f32(d.fcprojw, l.fcprojw.length).set(l.fcprojw);
      arena.f32(d.fcprojb, l.fcprojb.length).set(l.fcprojb);
    });
    // The hot rows and the int8 copy came from the old weights: after a change in place, use the full head.
    this.hotHead = null;
    this.screenHead = null;
    this.finiteHead = null;
  }
}

/** One sequence being decoded: its KV cache and scratch space (config → weights → run state, as in llama2.c). */
export class InferenceSession {
  readonly weights: InferenceWeights;
  /** Number of positions already in the cache. */
  position = 0;
  private readonly keyCache: Float32Array[]; // L × [maxT, C]
  private readonly valueCache: Float32Array[]; // L × [maxT, C]
  // Prefill scratch, one row per position: [maxT, ·].
  private readonly x: Float32Array; // [maxT, C] residual stream
  private readonly xn: Float32Array; // [maxT, C] layer-norm output
  private readonly qkv: Float32Array; // [maxT, 3C]
  private readonly atty: Float32Array; // [maxT, C]
  private readonly proj: Float32Array; // [maxT, C]
  private readonly fch: Float32Array; // [maxT, 4C]
  private readonly fchGelu: Float32Array; // [maxT, 4C]
  private readonly mean: Float32Array; // [maxT]
  private readonly rstd: Float32Array; // [maxT]
  private readonly scores: Float32Array; // [maxT] attention scores of one query
  private readonly logits: Float32Array; // [V], inside WebAssembly memory when the head is packed there
  private readonly headInput: Float32Array; // [C] final-normed last row, the LM head's input
  private readonly headPtrs: { logits: number; input: number } | null;
  /** Logits of the hot rows only (see stepHot), inside WebAssembly memory; null without a hot head. */
  private readonly hotLogits: Float32Array | null;
  private readonly hotLogitsPtr: number;
  private readonly hotHeadAtStart: HotHead | null;
  /** Each 64-row group's largest logit from the last full head (see topLogits); null on the pure-JS path. */
  private readonly top: TopScratch | null;
  /** Whether the group maxima in `top` belong to the logits of the last position run. */
  private topValid = false;
  /** Screening buffers (see screenedTop); null without a screening head. */
  private readonly screen: ScreenScratch | null;
  /** WebAssembly scratch for one-token products: input row and output row, 4C floats each. */
  private readonly gemvIn: { ptr: number; view: Float32Array } | null;
  private readonly gemvOut: { ptr: number; view: Float32Array } | null;
  private readonly oneId = new Int32Array(1);
  private readonly lastRow: Float32Array; // [C] copy of the last residual row (no per-token subarray)

  constructor(weights: InferenceWeights) {
    this.weights = weights;
    const { nPositions: maxT, nEmbd: C, nLayer: L, vocabSize: V } = weights.config;
    this.keyCache = Array.from({ length: L }, () => new Float32Array(maxT * C));
    this.valueCache = Array.from({ length: L }, () => new Float32Array(maxT * C));
    this.x = new Float32Array(maxT * C);
    this.xn = new Float32Array(maxT * C);
    this.qkv = new Float32Array(maxT * 3 * C);
    this.atty = new Float32Array(maxT * C);
    this.proj = new Float32Array(maxT * C);
    this.fch = new Float32Array(maxT * 4 * C);
    this.fchGelu = new Float32Array(maxT * 4 * C);
    this.mean = new Float32Array(maxT);
    this.rstd = new Float32Array(maxT);
    this.scores = new Float32Array(maxT);
    this.lastRow = new Float32Array(C);
    const head = weights.packedHead;
    if (head) {
      // Padded to whole 64-row groups: collectAtLeast reads groups whole (the padding is never written).
      const logitsBytes = Math.ceil(head.blocks / 4) * 4 * HEAD_BLOCK * 4;
      const bytes = logitsBytes + Math.ceil(C / 16) * 64;
      const ptr = head.arena.alloc(bytes);
      head.arena.freeWith(this, ptr, bytes);
      this.headPtrs = { logits: ptr, input: ptr + logitsBytes };
      this.logits = head.arena.f32(ptr, V);
      this.headInput = head.arena.f32(ptr + logitsBytes, C);
    } else {
      this.headPtrs = null;
      this.logits = new Float32Array(V);
      this.headInput = new Float32Array(C);
    }
    if (head && weights.decodeLayers) {
      const bytes = 4 * C * 4;
      const inPtr = head.arena.alloc(bytes);
      const outPtr = head.arena.alloc(bytes);
      head.arena.freeWith(this, inPtr, bytes);
      head.arena.freeWith(this, outPtr, bytes);
      this.gemvIn = { ptr: inPtr, view: head.arena.f32(inPtr, 4 * C) };
      this.gemvOut = { ptr: outPtr, view: head.arena.f32(outPtr, 4 * C) };
    } else {
      this.gemvIn = null;
      this.gemvOut = null;
    }
    this.top = head ? topScratch(head.arena, Math.ceil(head.blocks / 4), this) : null;
    const screenHead = weights.screenHead;
    this.screen = head && screenHead ? screenScratch(head.arena, screenHead, this) : null;
    const hot = weights.hotHead;
    this.hotHeadAtStart = hot;
    if (head && hot) {
      const bytes = hot.blocks * HEAD_BLOCK * 4;
      this.hotLogitsPtr = head.arena.alloc(bytes);
      head.arena.freeWith(this, this.hotLogitsPtr, bytes);
      this.hotLogits = head.arena.f32(this.hotLogitsPtr, hot.ids.length);
    } else {
      this.hotLogitsPtr = 0;
      this.hotLogits = null;
    }
  }

  /** True when prefillHot/stepHot can run: the weights have a hot head (see InferenceWeights.hotHead). */
  get hasHotHead(): boolean {
    return this.hotLogits !== null && this.weights.hotHead === this.hotHeadAtStart;
  }

  /**
   * Like prefill, but computes only the hot rows' logits (indexed like weights.hotHead.ids); every other
   * logit is at most coldBound(). completeLogits() then gives the full logits of the same position.
   */
  prefillHot(ids: ArrayLike<number>): Float32Array {
    const n = ids.length;
    if (n === 0) throw new RangeError('prefill needs at least one token');
    this.forwardRows(ids, n, 'hot');
    return this.hotLogits as Float32Array;
  }

  /** Like step, computing only the hot rows' logits (see prefillHot). */
  stepHot(id: number): Float32Array {
    this.oneId[0] = id;
    if (this.oneId[0] !== id)
      throw new RangeError(`token id ${id} is outside [0, ${this.weights.config.vocabSize})`);
    this.forwardRows(this.oneId, 1, 'hot');
    return this.hotLogits as Float32Array;
  }

  /**
   * The k largest logits of the last full head run (prefill, step or completeLogits), sorted descending with
   * ties to the lower id, into ids/values — what a top-k over all V logits gives, without scanning them all:
   * the head kernel recorded each 64-row group's maximum; with T the k-th largest of those maxima, k groups
   * hold a logit ≥ T, so the logits ≥ T (found in the groups whose maximum reaches T) number at least k and
   * hold the k largest, ties included. False when this cannot run (the pure-JS path, no full head since the last
   * position, k outside [1, groups], non-finite weights or inputs): then a scan of all logits gives the answer.
   */
  topLogits(k: number, ids: Int32Array, values: Float64Array): boolean {
    const top = this.top;
    const packed = this.weights.packedHead;
    if (!top || !packed || !this.headPtrs || !this.topValid || k < 1 || k > top.groups) return false;
    const { vocabSize: V, nEmbd: C } = this.weights.config;
    const G = top.groups;
    // NaN logits would be passed over by the group maxima but not by a full scan: run only on finite ones.
    for (let c = 0; c < C; c++) if (!Number.isFinite(this.headInput[c])) return false;
    if (!this.weights.headIsFinite) return false;
    const kernels = packed.arena.kernels;
    const cut = kernels.kthLargest(top.gmaxPtr, G, k, top.candValsPtr);
    const n = kernels.collectAtLeast(
      this.headPtrs.logits,
      top.gmaxPtr,
      G,
      V,
      cut,
      top.candPtr,
      top.candValsPtr,
    );
    if (n < k) return false;
    this.takeTop(top, top.candValsPtr, n, k, ids, values);
    return true;
  }

  /** The k largest of the n candidates' values at valsPtr (ids in top.cand), sorted, into ids/values. */
  private takeTop(
    top: TopScratch,
    valsPtr: number,
    n: number,
    k: number,
    ids: Int32Array,
    values: Float64Array,
  ) {
    (this.weights.packedHead as PackedHead).arena.kernels.topK(valsPtr, n, k, top.topIdsPtr, top.topValsPtr);
    for (let i = 0; i < k; i++) {
      ids[i] = top.cand[top.topIds[i]];
      values[i] = top.topVals[i];
    }
    this.lastTopCandidates = n;
  }

  /** Largest k topLogits serves (the number of 64-row groups); 0 on the pure-JS path. */
  get topLimit(): number {
    return this.top ? this.top.groups : 0;
  }

  /** Logits compared by the last topLogits or screenedTop (for tests and benchmarks). */
  lastTopCandidates = 0;

  /** Largest k screenedTop serves (the number of 64-row groups); 0 without a usable screening head. */
  get screenLimit(): number {
    const sc = this.screen;
    return sc && this.top && this.weights.screenHead === sc.head ? sc.head.groups : 0;
  }

  /** Like prefill, but leaves the LM head to screenedTop (or completeLogits). */
  prefillScreened(ids: ArrayLike<number>): void {
    const n = ids.length;
    if (n === 0) throw new RangeError('prefill needs at least one token');
    this.forwardRows(ids, n, 'last-norm');
  }

  /** Like step, but leaves the LM head to screenedTop (or completeLogits). */
  stepScreened(id: number): void {
    this.oneId[0] = id;
    if (this.oneId[0] !== id)
      throw new RangeError(`token id ${id} is outside [0, ${this.weights.config.vocabSize})`);
    this.forwardRows(this.oneId, 1, 'last-norm');
  }

  /**
   * The k largest logits of the position run by prefillScreened/stepScreened, as topLogits gives them after a
   * full head (same ids, bit-identical values), from the int8 head: every row's score a[v] is within E of its
   * logit (E bounds the weights' and the input's rounding and the float slack), so with T the k-th largest
   * group maximum of the scores, k rows have logits ≥ T − E and no row scoring below T − 2E can be among the
   * top k. The rows left get their f32 logit through the full head's own kernel chain. False when this
   * cannot run (k outside [1, screenLimit], non-finite or zero input or weights): completeLogits() then.
   */
  screenedTop(k: number, ids: Int32Array, values: Float64Array): boolean {
    const sc = this.screen;
    const top = this.top;
    const packed = this.weights.packedHead;
    if (!sc || !top || !packed || !this.headPtrs || k < 1 || k > this.screenLimit) return false;
    if (!this.weights.headIsFinite) return false;
    const { vocabSize: V, nEmbd: C } = this.weights.config;
    const sh = sc.head;
    const h = this.headInput;
    let hmax = 0;
    let l1 = 0;
    for (let c = 0; c < C; c++) {
      const a = Math.abs(h[c]);
      if (!(a <= Number.MAX_VALUE)) return false;
      if (a > hmax) hmax = a;
      l1 += a;
    }
    if (hmax === 0) return false;
    const hScale = hmax / 32767;
    for (let c = 0; c < C; c++) sc.h[c] = Math.round(h[c] / hScale);
    const err =
      0.5 * sh.maxScale * l1 +
      0.5 * hScale * sh.maxL1 +
      2 ** -20 * (C + 8) * (sh.maxAbs * l1 + sh.maxL1 * hmax);
    const kernels = packed.arena.kernels;
    const G = sh.groups;
    kernels.screenHead(sc.approxPtr, top.gmaxPtr, sh.q, sh.scale, sc.hPtr, hScale, G, sh.C2);
    realLastGroupMax(top, sc.approx, V);
    const cut = kernels.kthLargest(top.gmaxPtr, G, k, top.candValsPtr) - 2 * err;
    const n = kernels.collectAtLeast(sc.approxPtr, top.gmaxPtr, G, V, cut, top.candPtr, top.candValsPtr);
    if (n < k) return false;
    kernels.headRows(sc.exactPtr, this.headPtrs.input, packed.ptr, top.candPtr, n, C);
    this.takeTop(top, sc.exactPtr, n, k, ids, values);
    return true;
  }

  /**
   * An upper bound on every logit outside the hot rows at the last position run: ||h||·(largest cold row
   * norm), widened by a relative 1e-4 so float rounding in the dot products cannot cross it.
   */
  coldBound(): number {
    const hot = this.hotHeadAtStart;
    if (!hot) return Number.POSITIVE_INFINITY;
    const h = this.headInput;
    let sum = 0;
    for (let c = 0; c < h.length; c++) sum += h[c] * h[c];
    return Math.sqrt(sum) * hot.coldMaxNorm * (1 + 1e-4) + 1e-30;
  }

  /** The full logits of the last position run by prefillHot/stepHot (the same values prefill/step give). */
  completeLogits(): Float32Array {
    this.fullHead();
    return this.logits;
  }

  /** Forgets the sequence; the cache is overwritten by the next prefill. */
  reset(): void {
    this.position = 0;
  }

  /** Positions left in the context. */
  get remaining(): number {
    return this.weights.config.nPositions - this.position;
  }

  /**
   * Runs `ids` through the model at positions [position, position + n), filling the cache,
   * and returns the logits of the last one. The returned array is reused by the next call.
   */
  prefill(ids: ArrayLike<number>): Float32Array {
    const n = ids.length;
    if (n === 0) throw new RangeError('prefill needs at least one token');
    this.forwardRows(ids, n, 'full');
    return this.logits;
  }

  /** Feeds one token at the next position and returns the logits for the position after it. */
  step(id: number): Float32Array {
    this.oneId[0] = id;
    if (this.oneId[0] !== id)
      throw new RangeError(`token id ${id} is outside [0, ${this.weights.config.vocabSize})`);
    this.forwardRows(this.oneId, 1, 'full');
    return this.logits;
  }

  /** Full logits [n, V] for every position of `ids` from position 0 (for tests and evaluation). */
  allLogits(ids: ArrayLike<number>): Float32Array {
    const { vocabSize: V, nEmbd: C } = this.weights.config;
    this.reset();
    const n = ids.length;
    this.forwardRows(ids, n, 'none');
    const out = new Float32Array(n * V);
    const w = this.weights.views;
    this.layerNormFinal(n);
    matmulTransposedForward(out, this.xn, w.lmHead, n, C, V);
    return out;
  }

  private layerNormFinal(rows: number): void {
    const { nEmbd: C, layerNormEpsilon: eps } = this.weights.config;
    const w = this.weights.views;
    layernormForward(this.xn, this.mean, this.rstd, this.x, w.lnfw, w.lnfb, rows, C, eps);
  }

  /**
   * Transformer body over n new rows, then the LM head on the last row: all logits ('full'), the hot rows'
   * ('hot'), only the final layer norm of the last row ('last-norm', for screenedTop) or nothing ('none').
   */
  private forwardRows(ids: ArrayLike<number>, n: number, head: 'full' | 'hot' | 'last-norm' | 'none'): void {
    const {
      vocabSize: V,
      nPositions: maxT,
      nEmbd: C,
      nLayer: L,
      nHead: NH,
      layerNormEpsilon: eps,
    } = this.weights.config;
    const start = this.position;
    this.topValid = false;
    if (start + n > maxT) {
      throw new RangeError(`context full: ${start} + ${n} positions exceed the context of ${maxT}`);
    }
    const w = this.weights.views;
    const hs = C / NH;
    const scale = 1 / Math.sqrt(hs);
    const { x, xn, qkv, atty, proj, fch, fchGelu, mean, rstd, scores } = this;
    for (let r = 0; r < n; r++) {
      const id = ids[r];
      if (!(Number.isInteger(id) && id >= 0 && id < V))
        throw new RangeError(`token id ${id} is outside [0, ${V})`);
      const pos = (start + r) * C;
      const row = r * C;
      const e = id * C;
      for (let c = 0; c < C; c++) x[row + c] = w.wte[e + c] + w.wpe[pos + c];
    }
    for (let l = 0; l < L; l++) {
      const p = w.layers[l];
      const d = this.weights.decodeLayers?.[l];
      const kc = this.keyCache[l];
      const vc = this.valueCache[l];
      layernormForward(xn, mean, rstd, x, p.ln1w, p.ln1b, n, C, eps);
      this.linear(qkv, xn, p.qkvw, p.qkvb, d?.qkvw, d?.qkvb, n, C, 3 * C);
      for (let r = 0; r < n; r++) {
        const src = r * 3 * C;
        const dst = (start + r) * C;
        for (let c = 0; c < C; c++) {
          kc[dst + c] = qkv[src + C + c];
          vc[dst + c] = qkv[src + 2 * C + c];
        }
      }
      for (let r = 0; r < n; r++) {
        const t = start + r;
        for (let h = 0; h < NH; h++) {
          const q = r * 3 * C + h * hs;
          let max = Number.NEGATIVE_INFINITY;
          for (let t2 = 0; t2 <= t; t2++) {
            const k = t2 * C + h * hs;
            let s = 0;
            for (let i = 0; i < hs; i++) s += qkv[q + i] * kc[k + i];
            s *= scale;
            scores[t2] = s;
            if (s > max) max = s;
          }
          let sum = 0;
          for (let t2 = 0; t2 <= t; t2++) {
            const ev = Math.exp(scores[t2] - max);
            scores[t2] = ev;
            sum += ev;
          }
          const inv = 1 / sum;
          const o = r * C + h * hs;
          for (let i = 0; i < hs; i++) atty[o + i] = 0;
          for (let t2 = 0; t2 <= t; t2++) {
            const a = scores[t2] * inv;
            const v = t2 * C + h * hs;
            for (let i = 0; i < hs; i++) atty[o + i] += a * vc[v + i];
          }
        }
      }
      this.linear(proj, atty, p.attprojw, p.attprojb, d?.attprojw, d?.attprojb, n, C, C);
      for (let i = 0; i < n * C; i++) x[i] += proj[i];
      layernormForward(xn, mean, rstd, x, p.ln2w, p.ln2b, n, C, eps);
      this.linear(fch, xn, p.fcw, p.fcb, d?.fcw, d?.fcb, n, C, 4 * C);
      geluForward(fchGelu, fch, n * 4 * C);
      this.linear(proj, fchGelu, p.fcprojw, p.fcprojb, d?.fcprojw, d?.fcprojb, n, 4 * C, C);
      for (let i = 0; i < n * C; i++) x[i] += proj[i];
    }
    this.position = start + n;
    if (head === 'none') return;
    // Only the last row needs logits: normalise it alone and run the LM head on it.
    const last = (n - 1) * C;
    const lastRow = this.lastRow;
    for (let c = 0; c < C; c++) lastRow[c] = x[last + c];
    layernormForward(this.headInput, mean, rstd, lastRow, w.lnfw, w.lnfb, 1, C, eps);
    if (head === 'last-norm') return;
    const hot = this.hotHeadAtStart;
    const packed = this.weights.packedHead;
    if (head === 'hot') {
      if (!hot || !packed || !this.headPtrs || !this.hasHotHead)
        throw new Error('this model has no hot LM-head rows: use prefill/step');
      // The same kernel over rows packed the same way: each hot logit is bit-identical to the full head's.
      packed.arena.kernels.lmHead(this.hotLogitsPtr, this.headPtrs.input, hot.ptr, hot.blocks, C);
      return;
    }
    this.fullHead();
  }

  /**
   * out[n, OC] = inp[n, IC]·W + b. One row with the weights in WebAssembly memory goes through the SIMD gemv
   * kernel (a decode step); anything else through matmulForward.
   */
  private linear(
    out: Float32Array,
    inp: Float32Array,
    weight: Float32Array,
    bias: Float32Array,
    weightPtr: number | undefined,
    biasPtr: number | undefined,
    n: number,
    IC: number,
    OC: number,
  ): void {
    const head = this.weights.packedHead;
    if (n === 1 && head && weightPtr !== undefined && biasPtr !== undefined && this.gemvIn && this.gemvOut) {
      // Element loops rather than subarray views: a decode step allocates nothing.
      const src = this.gemvIn.view;
      for (let i = 0; i < IC; i++) src[i] = inp[i];
      head.arena.kernels.gemv(this.gemvOut.ptr, this.gemvIn.ptr, weightPtr, biasPtr, IC, OC);
      const dst = this.gemvOut.view;
      for (let o = 0; o < OC; o++) out[o] = dst[o];
      return;
    }
    matmulForward(out, inp, weight, bias, n, IC, OC);
  }

  /** All V logits of the normalised last row in headInput. */
  private fullHead(): void {
    const { vocabSize: V, nEmbd: C } = this.weights.config;
    const head = this.weights.packedHead;
    if (head && this.headPtrs) {
      const top = this.top;
      if (top) {
        const { logits, input } = this.headPtrs;
        head.arena.kernels.lmHeadMax(logits, top.gmaxPtr, input, head.ptr, head.blocks, C);
        realLastGroupMax(top, this.logits, V);
        this.topValid = true;
      } else {
        head.arena.kernels.lmHead(this.headPtrs.logits, this.headPtrs.input, head.ptr, head.blocks, C);
      }
    } else {
      matmulTransposedForward(this.logits, this.headInput, this.weights.views.lmHead, 1, C, V);
    }
  }
}
