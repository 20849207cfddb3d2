// One sequence being decoded (llama2.c's RunState): its KV cache, the pass's scratch and its LM head, all
// allocated once; next() runs a step and answers what the sampler needs from it.
import type { LmHead } from '../head/lm-head.js';
import type { WasmArena } from '../wasm/runtime.js';
import { forward, KvCache, RunBuffers } from './forward.js';
import { JsRowOps, type RowOps, WasmRowOps } from './row-ops.js';
import type { InferenceWeights } from './weights.js';

/** A prompt runs through the model this many positions at a time (the scratch is sized for it). */
const PREFILL_CHUNK = 256;

/**
 * Allocates float buffers in the arena (freed once `owner` is collected), or on the JS heap without one.
 * `zero` false leaves reused arena memory as it was: for KV caches, whose positions are written before they
 * are read, so that their untouched pages stay out of resident memory.
 */
export function floatAllocator(
  arena: WasmArena | null,
  owner: object,
  zero = true,
): (floats: number) => Float32Array {
  if (!arena) return (floats) => new Float32Array(floats);
  return (floats) => {
    const bytes = Math.max(4, floats * 4);
    const ptr = arena.alloc(bytes);
    arena.freeWith(owner, ptr, bytes);
    const view = arena.f32(ptr, floats);
    if (zero) view.fill(0);
    return view;
  };
}

export interface InferenceSessionOptions {
  /** Positions this session's KV cache holds (default: the model's context); fewer take less memory. */
  positions?: number;
}

export class InferenceSession {
  readonly weights: InferenceWeights;
  /** Positions the KV cache holds: the most this session's sequence can span. */
  readonly capacity: number;
  private readonly cache: KvCache;
  private readonly buffers: RunBuffers;
  private readonly ops: RowOps;
  private readonly head: LmHead;
  private readonly one = new Int32Array(1);
  private readonly noIds = new Int32Array(0);
  private readonly noValues = new Float64Array(0);

  constructor(weights: InferenceWeights, options: InferenceSessionOptions = {}) {
    this.weights = weights;
    const context = weights.config.nPositions;
    const maxT = options.positions ?? context;
    if (!Number.isInteger(maxT) || maxT < 1 || maxT > context)
      throw new RangeError(`a session holds 1 to ${context} positions, not ${options.positions}`);
    this.capacity = maxT;
    const alloc = floatAllocator(weights.arena, this);
    this.cache = new KvCache(weights, maxT, floatAllocator(weights.arena, this, false));
    const rows = Math.min(maxT, PREFILL_CHUNK);
    this.buffers = new RunBuffers(weights, rows, alloc);
    this.buffers.caches.fill(this.cache);
    this.ops = weights.arena ? new WasmRowOps(weights.arena, maxT, this) : new JsRowOps(rows, maxT);
    this.head = weights.createHead(1, this);
  }

  /** Number of positions already in the cache. */
  get position(): number {
    return this.cache.position;
  }

  /** Positions left in this session's cache. */
  get remaining(): number {
    return this.capacity - this.cache.position;
  }

  /** This session's LM head (for tests and the bench). */
  get lmHead(): LmHead {
    return this.head;
  }

  /** The KV cache (a BatchDecoder advances it together with other sessions' caches). */
  get kvCache(): KvCache {
    return this.cache;
  }

  /** Forgets the sequence; the cache is overwritten by the next call. */
  reset(): void {
    this.cache.position = 0;
  }

  /**
   * Feeds `ids` at the next positions (a prompt, or the one token just sampled) and answers for the position
   * after them: with k > 0, the k largest logits sorted descending (ties to the lower id) into ids/values and
   * null; otherwise, or when the head cannot tell, all V logits (a buffer reused by the next call).
   */
  next(ids: ArrayLike<number>, k: number, topIds: Int32Array, topValues: Float64Array): Float32Array | null {
    return this.nextInto(this.cache, ids, k, topIds, topValues);
  }

  /**
   * next() for a sequence whose KV cache is `cache` (of these weights, at most this session's capacity)
   * instead of this session's own: one session's scratch prefills the prompts of many cached sequences (e.g.
   * those a BatchDecoder then advances together). The same operations as next(), so the same answers.
   */
  nextInto(
    cache: KvCache,
    ids: ArrayLike<number>,
    k: number,
    topIds: Int32Array,
    topValues: Float64Array,
  ): Float32Array | null {
    if (cache.maxT > this.capacity)
      throw new RangeError(`a cache of ${cache.maxT} positions, this session runs ${this.capacity}`);
    this.run(cache, ids);
    this.head.score(this.buffers.h, 1);
    if (k > 0 && this.head.top(0, k, topIds, topValues)) return null;
    return this.head.logits(0);
  }

  /** Runs `ids` at positions [position, position + n) and returns the logits of the last one (reused buffer). */
  prefill(ids: ArrayLike<number>): Float32Array {
    return this.next(ids, 0, this.noIds, this.noValues) as Float32Array;
  }

  /** Feeds one token at the next position and returns the logits for the position after it. */
  step(id: number): Float32Array {
    this.one[0] = id;
    if (this.one[0] !== id)
      throw new RangeError(`token id ${id} is outside [0, ${this.weights.config.vocabSize})`);
    return this.prefill(this.one);
  }

  /** Full logits [n, V] for every position of `ids` from position 0 (for tests and evaluation). */
  allLogits(ids: ArrayLike<number>): Float32Array {
    const { vocabSize: V, nEmbd: C } = this.weights.config;
    this.reset();
    const n = ids.length;
    const out = new Float32Array(n * V);
    const b = this.buffers;
    for (let r0 = 0; r0 < n; r0 += b.rows) {
      const rows = Math.min(b.rows, n - r0);
      this.forwardRows(this.cache, Array.prototype.slice.call(ids, r0, r0 + rows), rows, 'all');
      for (let r = 0; r < rows; r++) {
        // The head scores one row at a time: row r of h copied to the front, where row 0 is read.
        for (let c = 0; c < C; c++) b.xn[c] = b.h[r * C + c];
        this.head.score(b.xn, 1);
        out.set(this.head.logits(0), (r0 + r) * V);
      }
    }
    return out;
  }

  /** Runs ids through the model in chunks of the scratch's rows; h row 0 is the last position's final norm. */
  private run(cache: KvCache, ids: ArrayLike<number>): void {
    const n = ids.length;
    if (n === 0) throw new RangeError('prefill needs at least one token');
    const maxT = cache.maxT;
    if (cache.position + n > maxT) {
      throw new RangeError(`context full: ${cache.position} + ${n} positions exceed the context of ${maxT}`);
    }
    const rows = this.buffers.rows;
    if (n <= rows) {
      this.forwardRows(cache, ids, n, 'last');
      return;
    }
    for (let r0 = 0; r0 < n; r0 += rows)
      this.forwardRows(
        cache,
        Array.prototype.slice.call(ids, r0, Math.min(n, r0 + rows)),
        Math.min(rows, n - r0),
        'last',
      );
  }

  private forwardRows(cache: KvCache, ids: ArrayLike<number>, n: number, head: 'last' | 'all'): void {
    const b = this.buffers;
    const start = cache.position;
    b.caches.fill(cache, 0, n);
    for (let r = 0; r < n; r++) b.positions[r] = start + r;
    forward(this.weights, this.ops, b, ids, n, n > 1, head);
    cache.position = start + n;
  }
}
