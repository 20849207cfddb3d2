// Continuous batching in a generation worker: every running generation advances one token per step, all in one pass over the weights; a job joins at the next step and leaves when it ends or is cancelled.
import { BatchDecoder, floatAllocator, type InferenceSession, KvCache } from '../../engine/inference.js';
import { SamplerScratch } from '../../generate/sampler.js';
import { cachePositions } from './kv-budget.js';
import type { Sequence } from './sequence.js';

/**
 * Steps run back to back for up to this long before the event loop runs (and delivers new jobs): on tiny
 * models a step takes microseconds, and a turn of the event loop per step would cost more than the step.
 */
const SLICE_MS = 2;

/**
 * Runs the worker's sequences in steps. A step first prefills the sequences that joined since the last one
 * (each alone, on the worker's session, into its own KV cache), then advances every prefilled one by a token
 * in one batched pass (BatchDecoder: each gets the bits it gets alone, so a seed gives the same text whatever
 * runs beside it). Between slices of steps (see SLICE_MS) the event loop runs: new jobs arrive as messages;
 * cancels are read from the shared flags before every step. KV caches and sampler scratch are reused across
 * jobs, by size.
 */
export class BatchScheduler {
  private readonly decoder: BatchDecoder;
  private readonly sequences: Sequence[] = [];
  private readonly batch: Sequence[] = [];
  private readonly inputs: Int32Array;
  private readonly idleCaches = new Map<number, KvCache[]>();
  private readonly idleScratch: SamplerScratch[] = [];
  private scheduled = false;

  constructor(
    /** The worker's session: its scratch prefills every prompt, its weights are the batch's. */
    private readonly session: InferenceSession,
    readonly capacity: number,
    /** Whether the pool cancelled the job in `slot` (see WorkerInit.cancel). */
    private readonly cancelled: (slot: number, jobId: number) => boolean,
    /** Reports a sequence that failed inside the engine. */
    private readonly failed: (sequence: Sequence, err: unknown) => void,
  ) {
    this.decoder = new BatchDecoder(session.weights, capacity);
    this.inputs = new Int32Array(capacity);
  }

  /** Sequences running or waiting for their prefill. */
  get size(): number {
    return this.sequences.length;
  }

  /** A KV cache for a sequence of `positions` (a reused one of the same rounded size when there is one). */
  takeCache(positions: number): KvCache {
    const weights = this.session.weights;
    const maxT = cachePositions(positions, weights.config.nPositions);
    const cache =
      this.idleCaches.get(maxT)?.pop() ??
      new KvCache(weights, maxT, floatAllocator(weights.arena, this, false));
    cache.position = 0;
    return cache;
  }

  /** Sampler scratch for one sequence. */
  takeScratch(): SamplerScratch {
    return this.idleScratch.pop() ?? new SamplerScratch(this.session.weights.config.vocabSize);
  }

  /** Adds a sequence: it runs its prompt at the next step and then steps with the others. */
  add(sequence: Sequence): void {
    if (this.sequences.length >= this.capacity)
      throw new Error(`the batch is full (${this.capacity} sequences)`);
    this.sequences.push(sequence);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // setImmediate: messages (new jobs) are delivered between steps.
    setImmediate(() => {
      this.scheduled = false;
      const start = performance.now();
      do this.step();
      while (this.sequences.length > 0 && performance.now() - start < SLICE_MS);
      if (this.sequences.length > 0) this.schedule();
    });
  }

  /** One step: cancels, then joiners' prompts, then one token for every prefilled sequence. */
  private step(): void {
    for (const seq of [...this.sequences]) {
      if (!this.cancelled(seq.slot, seq.jobId)) continue;
      seq.cancel();
      this.remove(seq);
    }
    const batch = this.batch;
    batch.length = 0;
    for (const seq of [...this.sequences]) {
      if (seq.prefilled) {
        batch.push(seq);
        continue;
      }
      // A prompt runs alone (blocked products over its rows); its answer samples the first token.
      const gen = seq.generation;
      const ended = this.guard(seq, () => {
        seq.prefilled = true;
        const answer = this.session.nextInto(seq.kvCache, seq.ids, gen.k, gen.topIds, gen.topValues);
        return seq.accept(answer);
      });
      if (ended) this.remove(seq);
    }
    if (batch.length === 0) return;
    for (let r = 0; r < batch.length; r++) this.inputs[r] = batch[r].generation.input[0];
    try {
      this.decoder.step(batch, this.inputs, batch.length);
    } catch (err) {
      for (const seq of batch) {
        this.failed(seq, err);
        this.remove(seq);
      }
      return;
    }
    for (let r = 0; r < batch.length; r++) {
      const seq = batch[r];
      const gen = seq.generation;
      const ended = this.guard(seq, () =>
        seq.accept(this.decoder.answer(r, gen.k, gen.topIds, gen.topValues)),
      );
      if (ended) this.remove(seq);
    }
  }

  /** Runs `work` for `seq`; an exception fails that sequence alone (reported) and ends it. */
  private guard(seq: Sequence, work: () => boolean): boolean {
    try {
      return work();
    } catch (err) {
      this.failed(seq, err);
      return true;
    }
  }

  /** Takes `seq` out of the batch; its cache and scratch go back for the next jobs. */
  private remove(seq: Sequence): void {
    const at = this.sequences.indexOf(seq);
    if (at < 0) return;
    this.sequences.splice(at, 1);
    // Kept for reuse up to a batch's worth of each size (a cache's memory is only ever reused by its size).
    const cache = seq.kvCache;
    const list = this.idleCaches.get(cache.maxT) ?? [];
    if (list.length < this.capacity) list.push(cache);
    this.idleCaches.set(cache.maxT, list);
    if (this.idleScratch.length < this.capacity) this.idleScratch.push(seq.scratch);
  }
}
