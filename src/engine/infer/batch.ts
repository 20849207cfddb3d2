// Batched decode: one step for several sequences at once, each with its own KV cache and position, in one pass
// over the weights; every sequence gets exactly the logits it gets decoding alone.
import type { LmHead } from '../head/lm-head.js';
import { forward, type KvCache, RunBuffers } from './forward.js';
import { JsRowOps, type RowOps, WasmRowOps } from './row-ops.js';
import { floatAllocator } from './session.js';
import type { InferenceWeights } from './weights.js';

/** What a step needs of a sequence: its weights and its KV cache (an InferenceSession is one). */
export interface BatchSequence {
  readonly weights: InferenceWeights;
  readonly kvCache: KvCache;
}

/**
 * Advances up to `capacity` sessions of the same weights by one token each. Sessions are prefilled on their own
 * (InferenceSession.next with their prompt) and join any later step; a step needs no particular set or order
 * of sessions, so sequences come and go between steps (continuous batching). Each row runs exactly the
 * operations a session's own one-token step runs, so the answers are the same bits.
 */
export class BatchDecoder {
  readonly capacity: number;
  private readonly buffers: RunBuffers;
  private readonly ops: RowOps;
  private readonly head: LmHead;
  private rows = 0;

  constructor(
    readonly weights: InferenceWeights,
    capacity: number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`batch capacity must be ≥ 1, got ${capacity}`);
    this.capacity = capacity;
    const alloc = floatAllocator(weights.arena, this);
    this.buffers = new RunBuffers(weights, capacity, alloc);
    const maxT = weights.config.nPositions;
    this.ops = weights.arena ? new WasmRowOps(weights.arena, maxT, this) : new JsRowOps(capacity, maxT);
    this.head = weights.createHead(capacity, this);
  }

  /**
   * Feeds ids[i] to sessions[i] at its next position, for i < n (distinct sessions of these weights, each with
   * room left in its context); then answer(i, …) gives what the position after it needs.
   */
  step(sessions: readonly BatchSequence[], ids: ArrayLike<number>, n = sessions.length): void {
    if (n < 1 || n > this.capacity)
      throw new RangeError(`batch of ${n} sequences, room for ${this.capacity}`);
    const b = this.buffers;
    for (let r = 0; r < n; r++) {
      const s = sessions[r];
      if (s.weights !== this.weights) throw new Error(`sequence ${r} runs on other weights`);
      const cache = s.kvCache;
      for (let q = 0; q < r; q++)
        if (b.caches[q] === cache) throw new Error(`sequence ${r} appears twice in one step`);
      if (cache.position >= cache.maxT)
        throw new RangeError(`sequence ${r}: context full (${cache.maxT} positions)`);
      b.caches[r] = cache;
      b.positions[r] = cache.position;
    }
    this.rows = 0;
    forward(this.weights, this.ops, b, ids, n, false, 'all');
    for (let r = 0; r < n; r++) b.caches[r].position++;
    this.head.score(b.h, n);
    this.rows = n;
  }

  /**
   * Sequence r of the last step, as InferenceSession.next answers: with k > 0 the k largest logits into
   * topIds/topValues and null, otherwise (or when the head cannot tell) its V logits (reused by the next step).
   */
  answer(r: number, k: number, topIds: Int32Array, topValues: Float64Array): Float32Array | null {
    if (r < 0 || r >= this.rows) throw new RangeError(`row ${r} is not in the last step (${this.rows} rows)`);
    if (k > 0 && this.head.top(r, k, topIds, topValues)) return null;
    return this.head.logits(r);
  }

  /** The LM head of the batch (for tests and the bench). */
  get lmHead(): LmHead {
    return this.head;
  }
}
