// One generation in a worker's batch: its KV cache, its sampler state (seed, sampling, stops, processors), and the messages that report it to the pool.
import type { BatchSequence, InferenceWeights, KvCache } from '../../engine/inference.js';
import type { GenerateDelta, Generation } from '../../generate/generate.js';
import type { AlignedLogprobs, DescribedLogprob } from '../../generate/logprobs.js';
import type { SamplerScratch } from '../../generate/sampler.js';
import type { EchoedPrompt, FromWorker } from './protocol.js';
import { type TokenBatch, TokenBatcher } from './token-batcher.js';

/** What the first token message says: the prompt fit (the stream starts then). */
type StartInfo = { promptTokens: number; maxNewTokens: number; echo?: EchoedPrompt };

export interface SequenceSetup {
  jobId: number;
  /** The job's entry in the worker's cancel flags. */
  slot: number;
  stream: boolean;
  ids: readonly number[];
  weights: InferenceWeights;
  generation: Generation;
  cache: KvCache;
  scratch: SamplerScratch;
  /** Log-probabilities aligned with the released text, when asked for. */
  aligned: AlignedLogprobs | null;
  /** With echo, unstreamed: returned with the outcome (streamed: already posted). */
  echo?: EchoedPrompt;
  /** Not yet posted: goes with the first token message. */
  start?: StartInfo;
  /** When the worker received the job (performance.now()). */
  received: number;
  post(message: FromWorker): void;
}

/**
 * A job the batch scheduler runs: prefilled once, then fed one answer of the model per step. Every message it
 * posts is the one the job posted when it ran alone, in the same order.
 */
export class Sequence implements BatchSequence {
  readonly jobId: number;
  readonly slot: number;
  /** The prompt's tokens. */
  readonly ids: readonly number[];
  readonly weights: InferenceWeights;
  readonly generation: Generation;
  /** This sequence's KV cache (sized for its prompt and its most new tokens). */
  readonly kvCache: KvCache;
  readonly scratch: SamplerScratch;
  /** Whether its prompt has run (then it steps with the batch). */
  prefilled = false;
  private readonly s: SequenceSetup;
  private tokens = 0;
  private firstTokenMs = -1;
  private released = 0;
  private readonly entries: DescribedLogprob[] = [];
  private readonly batcher = new TokenBatcher();
  private start: StartInfo | undefined;

  constructor(setup: SequenceSetup) {
    this.s = setup;
    this.jobId = setup.jobId;
    this.slot = setup.slot;
    this.ids = setup.ids;
    this.weights = setup.weights;
    this.generation = setup.generation;
    this.kvCache = setup.cache;
    this.scratch = setup.scratch;
    this.start = setup.start;
  }

  /** Samples from the model's answer for the next position; returns true once the sequence has ended (posted). */
  accept(logits: Float32Array | null): boolean {
    const gen = this.generation;
    const delta = gen.accept(logits, this.kvCache.position < this.kvCache.maxT);
    if (delta) this.emit(delta);
    if (!gen.done) return false;
    const tail = gen.finish();
    if (tail) this.emit(tail);
    this.end();
    return true;
  }

  /** Reports the job cancelled after what it generated (its held text posted first when streamed). */
  cancel(): void {
    if (this.s.stream) this.flush();
    this.s.post({
      type: 'cancelled',
      jobId: this.jobId,
      promptTokens: this.s.ids.length,
      completionTokens: this.tokens,
    });
  }

  private emit(delta: GenerateDelta): void {
    const { aligned } = this.s;
    if (aligned) {
      if (delta.logprob) aligned.add(delta.logprob);
      this.released += delta.text.length;
      this.entries.push(...aligned.release(this.released));
    }
    // The final flush of held-back text has id -1 and is not a new token.
    if (delta.id >= 0 && ++this.tokens === 1) this.firstTokenMs = performance.now() - this.s.received;
    if (this.s.stream) this.postBatch(this.batcher.add(delta.text, this.tokens, performance.now()));
  }

  private end(): void {
    const r = this.generation.result();
    const { aligned, stream } = this.s;
    if (aligned) this.entries.push(...aligned.finish(r.finishReason === 'stop' && !r.endedByEos));
    if (stream) this.flush();
    this.s.post({
      type: 'done',
      jobId: this.jobId,
      firstTokenMs: this.firstTokenMs,
      outcome: {
        text: r.text,
        finishReason: r.finishReason,
        promptTokens: r.promptTokens,
        completionTokens: r.completionTokens,
        ...(stream ? {} : { echo: this.s.echo }),
        ...(aligned && !stream ? { logprobs: this.entries } : {}),
      },
    });
  }

  private flush(): void {
    this.postBatch(this.batcher.flush(performance.now()));
  }

  private postBatch(batch: TokenBatch | null): void {
    if (!batch && this.entries.length === 0) return;
    const logprobs = this.s.aligned ? { logprobs: this.entries.splice(0) } : {};
    this.s.post({
      type: 'token',
      jobId: this.jobId,
      ...(batch ?? { text: '', tokens: this.tokens }),
      start: this.start,
      ...logprobs,
    });
    this.start = undefined;
  }
}
