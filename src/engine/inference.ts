// KV-cache inference: batched prefill of a prompt, then one-token steps; every buffer is allocated once.
import { type GPTConfig, validateConfig } from './config.js';
import { type ModelViews, modelViews, parameterLayout } from './layout.js';
import { matmulForward, matmulTransposedForward } from './matmul.js';
import { geluForward, layernormForward } from './ops.js';
import { type WasmArena, wasmArena } from './wasm/runtime.js';

/** LM-head rows packed per WebAssembly block (see lmHead in wasm/assembly/kernels.ts). */
const HEAD_BLOCK = 16;

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
}

export interface InferenceWeightsOptions {
  /**
   * 'share': pack the LM head for other threads too (see sharedHead); it is then never freed, as other
   * threads may read it for as long as the memory lives. A SharedHead: use that packed head (this thread's
   * arena must be over its memory, see adoptWasmMemory) instead of packing one.
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
    const given = typeof options.head === 'object' ? options.head : null;
    if (arena && given && arena.memory === given.memory && given.blocks === blocks) {
      this.packedHead = { arena, ptr: given.ptr, blocks };
    } else if (arena) {
      const bytes = blocks * HEAD_BLOCK * C * 4;
      const ptr = arena.alloc(bytes);
      if (options.head !== 'share') arena.freeWith(this, ptr, bytes);
      this.packedHead = { arena, ptr, blocks };
      this.repackHead();
    } else {
      this.packedHead = null;
    }
  }

  /** The packed head as another thread can adopt it (null on the pure-JS path). */
  get sharedHead(): SharedHead | null {
    const head = this.packedHead;
    if (!head) return null;
    return { module: head.arena.module, memory: head.arena.memory, ptr: head.ptr, blocks: head.blocks };
  }

  /**
   * Copies the LM head into WebAssembly memory again. The copy is taken at construction; call this after
   * changing the parameters in place (e.g. sampling between training steps).
   */
  repackHead(): void {
    const head = this.packedHead;
    if (!head) return;
    const { vocabSize: V, nEmbd: C } = this.config;
    const w = this.views.lmHead;
    const packed = head.arena.f32(head.ptr, head.blocks * HEAD_BLOCK * C);
    for (let b = 0; b < head.blocks; b++) {
      for (let j = 0; j < HEAD_BLOCK; j++) {
        const v = b * HEAD_BLOCK + j;
        const dst = b * HEAD_BLOCK * C + j;
        if (v < V) for (let c = 0; c < C; c++) packed[dst + c * HEAD_BLOCK] = w[v * C + c];
        else for (let c = 0; c < C; c++) packed[dst + c * HEAD_BLOCK] = 0;
      }
    }
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
      const logitsBytes = head.blocks * HEAD_BLOCK * 4;
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
    this.forwardRows(ids, n, true);
    return this.logits;
  }

  /** Feeds one token at the next position and returns the logits for the position after it. */
  step(id: number): Float32Array {
    this.oneId[0] = id;
    if (this.oneId[0] !== id)
      throw new RangeError(`token id ${id} is outside [0, ${this.weights.config.vocabSize})`);
    this.forwardRows(this.oneId, 1, true);
    return this.logits;
  }

  /** Full logits [n, V] for every position of `ids` from position 0 (for tests and evaluation). */
  allLogits(ids: ArrayLike<number>): Float32Array {
    const { vocabSize: V, nEmbd: C } = this.weights.config;
    this.reset();
    const n = ids.length;
    this.forwardRows(ids, n, false);
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

  /** Transformer body over n new rows; with `lastLogits` also computes the final logits of the last row. */
  private forwardRows(ids: ArrayLike<number>, n: number, lastLogits: boolean): void {
    const {
      vocabSize: V,
      nPositions: maxT,
      nEmbd: C,
      nLayer: L,
      nHead: NH,
      layerNormEpsilon: eps,
    } = this.weights.config;
    const start = this.position;
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
      const kc = this.keyCache[l];
      const vc = this.valueCache[l];
      layernormForward(xn, mean, rstd, x, p.ln1w, p.ln1b, n, C, eps);
      matmulForward(qkv, xn, p.qkvw, p.qkvb, n, C, 3 * C);
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
      matmulForward(proj, atty, p.attprojw, p.attprojb, n, C, C);
      for (let i = 0; i < n * C; i++) x[i] += proj[i];
      layernormForward(xn, mean, rstd, x, p.ln2w, p.ln2b, n, C, eps);
      matmulForward(fch, xn, p.fcw, p.fcb, n, C, 4 * C);
      geluForward(fchGelu, fch, n * 4 * C);
      matmulForward(proj, fchGelu, p.fcprojw, p.fcprojb, n, 4 * C, C);
      for (let i = 0; i < n * C; i++) x[i] += proj[i];
    }
    this.position = start + n;
    if (!lastLogits) return;
    // Only the last row needs logits: normalise it alone and run the LM head on it.
    const last = (n - 1) * C;
    const lastRow = this.lastRow;
    for (let c = 0; c < C; c++) lastRow[c] = x[last + c];
    layernormForward(this.headInput, mean, rstd, lastRow, w.lnfw, w.lnfb, 1, C, eps);
    const head = this.weights.packedHead;
    if (head && this.headPtrs) {
      head.arena.kernels.lmHead(this.headPtrs.logits, this.headPtrs.input, head.ptr, head.blocks, C);
    } else {
      matmulTransposedForward(this.logits, this.headInput, w.lmHead, 1, C, V);
    }
  }
}
