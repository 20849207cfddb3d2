// The generation loop: prefill the prompt, then sample → stop rules → stream text, one token at a time.
import type { InferenceSession } from '../engine/inference.js';
import { Rng } from '../engine/rng.js';
import {
  applyLogitBias,
  applyPenalties,
  GeneratedCounts,
  NO_PROCESSORS,
  type ProcessorParams,
  processorsActive,
} from './logits-processors.js';
import { type TokenLogprob, tokenLogprob } from './logprobs.js';
import {
  applyRepetitionPenalty,
  SamplerScratch,
  type SamplingParams,
  sampleFromTop,
  sampleToken,
  topCountNeeded,
} from './sampler.js';
import { StopMatcher } from './stop.js';
import { type TokenBytes, TokenTextStream } from './text-stream.js';

export interface GenerateOptions extends SamplingParams, Partial<ProcessorParams> {
  /** Upper bound on generated tokens (the context may end generation earlier). */
  maxNewTokens: number;
  /** Seed for the sampler's RNG: same seed, same prompt, same options → same tokens. */
  seed: number;
  /** Text sequences that end generation; they are not part of the returned text. */
  stop?: readonly string[];
  /** End-of-text id that ends generation (not emitted); null to never stop on it. */
  eosTokenId: number | null;
  /**
   * Report each generated token's log-probability with this many most likely alternatives (see
   * logprobs.ts); null or absent for none.
   */
  logprobs?: number | null;
}

export type FinishReason = 'stop' | 'length';

/** One streamed piece: the token just generated and the text it released (may be empty). */
export interface GenerateDelta {
  id: number;
  text: string;
  /** The token's log-probability, when options.logprobs asked for them (not for an end-of-text token). */
  logprob?: TokenLogprob;
}

export interface GenerateResult {
  /** Generated ids (without the prompt, without a final EOS). */
  ids: number[];
  text: string;
  finishReason: FinishReason;
  /** True when generation ended because the model produced the end-of-text token. */
  endedByEos: boolean;
  promptTokens: number;
  completionTokens: number;
}

export { ORIGINAL_SAMPLING } from './original-sampling.js';

/**
 * One sequence's generation as a state machine, for whoever runs the model: feed it the model's answer for each
 * position (InferenceSession.next, or BatchDecoder.answer when several sequences step together) and it samples,
 * applies the stop rules and streams text. generate() runs on it, so a sequence stepped in a batch gets the
 * tokens and text it gets alone: same seed, same output, whatever runs beside it.
 */
export class Generation {
  /** How many of the largest logits the sampler needs from the model (0: all of them). */
  readonly k: number;
  /** Where the model writes those k logits (their ids and values). */
  readonly topIds: Int32Array;
  readonly topValues: Float64Array;
  /** The token to feed the model next (valid while not done). */
  readonly input = new Int32Array(1);
  /** True once generation has ended (end-of-text, a stop sequence, the token budget or the context). */
  done: boolean;
  private readonly rng: Rng;
  private readonly stream: TokenTextStream | null;
  private readonly stops: StopMatcher;
  private readonly seen: number[];
  private readonly processors: ProcessorParams;
  /** Whether presence/frequency penalties or a logit bias apply (then the full logits are processed). */
  private readonly processing: boolean;
  private readonly wantLogprobs: boolean;
  private readonly counts = new GeneratedCounts();
  /** The sampling parameters once `processed` has applied the repetition penalty. */
  private readonly afterRepetition: SamplingParams;
  private readonly ids: number[] = [];
  private text = '';
  private finishReason: FinishReason = 'length';
  private endedByEos = false;
  private generated = 0;
  private finished = false;

  /** `context`: the model's positions; `scratch`: the sampler's (one per sequence sampled at the same time). */
  constructor(
    tokenizer: TokenBytes | null,
    private readonly promptIds: readonly number[],
    private readonly options: GenerateOptions,
    context: number,
    private readonly scratch: SamplerScratch,
  ) {
    if (promptIds.length === 0) throw new RangeError('the prompt must contain at least one token');
    if (promptIds.length > context) {
      throw new RangeError(`prompt has ${promptIds.length} tokens, the context holds ${context}`);
    }
    // Without a tokenizer only ids are produced (text stays empty and stop sequences cannot apply).
    if (!tokenizer && options.stop && options.stop.length > 0)
      throw new Error('stop sequences need a tokenizer');
    this.rng = new Rng(options.seed);
    this.stream = tokenizer ? new TokenTextStream(tokenizer) : null;
    this.stops = new StopMatcher(options.stop ?? []);
    this.seen = options.repetitionPenalty !== 1 ? [...promptIds] : [];
    this.processors = { ...NO_PROCESSORS, ...definedOnly(options) };
    this.processing = processorsActive(this.processors);
    this.wantLogprobs = options.logprobs !== null && options.logprobs !== undefined;
    this.afterRepetition = { ...options, repetitionPenalty: 1 };
    // Top-k and greedy sampling need only the k largest logits: the model's LM head answers them exactly,
    // however it finds them (see src/engine/head/); otherwise, or when it cannot tell, it returns all V logits.
    // Log-probabilities and the processors need every step's full logits (the same tokens either way).
    this.k = this.processing || this.wantLogprobs ? 0 : topCountNeeded(options);
    this.topIds = scratch.ids;
    this.topValues = scratch.values;
    this.done = options.maxNewTokens <= 0;
  }

  /**
   * Samples the next token from the model's answer (`logits`, or null when topIds/topValues hold the k largest)
   * and returns its delta (null when it was end-of-text, which is not emitted). `roomLeft`: whether the context
   * has a position left for the token to be fed back.
   */
  accept(logits: Float32Array | null, roomLeft: boolean): GenerateDelta | null {
    if (this.done) throw new Error('generation has ended');
    const { options, scratch } = this;
    // Draw the coin even for greedy decoding so a seed means the same thing at every temperature.
    const coin = this.rng.random();
    let id: number;
    let logprob: TokenLogprob | undefined;
    if (!logits) id = sampleFromTop(options, coin, scratch);
    else {
      id = this.processing
        ? sampleToken(
            processed(logits, scratch, this.seen, this.counts, options, this.processors),
            this.afterRepetition,
            coin,
            scratch,
          )
        : sampleToken(logits, options, coin, scratch, this.seen);
      if (this.wantLogprobs) logprob = tokenLogprob(logits, id, options.logprobs ?? 0);
    }
    this.generated++;
    if (options.eosTokenId !== null && id === options.eosTokenId) {
      this.finishReason = 'stop';
      this.endedByEos = true;
      this.done = true;
      return null;
    }
    this.ids.push(id);
    if (options.repetitionPenalty !== 1) this.seen.push(id);
    if (this.processing) this.counts.add(id);
    const piece = this.stream ? this.stops.push(this.stream.push(id)) : '';
    this.text += piece;
    if (this.stops.done) {
      this.finishReason = 'stop';
      this.done = true;
    } else if (this.generated >= options.maxNewTokens || !roomLeft) this.done = true;
    this.input[0] = id;
    return logprob ? { id, text: piece, logprob } : { id, text: piece };
  }

  /** Once done: the text held back for a possible stop sequence or an unfinished character (id -1), if any. */
  finish(): GenerateDelta | null {
    if (!this.done || this.finished) return null;
    this.finished = true;
    if (!this.stream || this.stops.done) return null;
    const tail = this.stops.push(this.stream.flush()) + this.stops.flush();
    if (!tail) return null;
    this.text += tail;
    return { id: -1, text: tail };
  }

  /** The whole result so far (complete once done and finished). */
  result(): GenerateResult {
    return {
      ids: this.ids,
      text: this.text,
      finishReason: this.finishReason,
      endedByEos: this.endedByEos,
      promptTokens: this.promptIds.length,
      completionTokens: this.generated,
    };
  }
}

/**
 * Generates from `promptIds` on a fresh session. Yields deltas as tokens arrive; the return value is the
 * whole result. Stopping the iteration early (return/break) abandons generation at once.
 */
export function* generate(
  session: InferenceSession,
  tokenizer: TokenBytes | null,
  promptIds: readonly number[],
  options: GenerateOptions,
): Generator<GenerateDelta, GenerateResult, void> {
  const gen = new Generation(tokenizer, promptIds, options, session.capacity, scratchFor(session));
  session.reset();
  let logits = session.next(promptIds, gen.k, gen.topIds, gen.topValues);
  while (!gen.done) {
    const delta = gen.accept(logits, session.remaining > 0);
    if (delta) yield delta;
    if (gen.done) break;
    logits = session.next(gen.input, gen.k, gen.topIds, gen.topValues);
  }
  const tail = gen.finish();
  if (tail) yield tail;
  return gen.result();
}

/** The fields of ProcessorParams that `options` sets (absent or undefined ones keep their neutral value). */
function definedOnly(options: Partial<ProcessorParams>): Partial<ProcessorParams> {
  const out: Partial<ProcessorParams> = {};
  if (options.presencePenalty !== undefined) out.presencePenalty = options.presencePenalty;
  if (options.frequencyPenalty !== undefined) out.frequencyPenalty = options.frequencyPenalty;
  if (options.logitBias !== undefined) out.logitBias = options.logitBias;
  return out;
}

/**
 * The logits the sampler draws from when processors apply: a copy of `full` with the repetition penalty,
 * the presence/frequency penalties and the logit bias applied, in that order (Hugging Face's order of
 * processors, OpenAI's penalties and bias after it).
 */
function processed(
  full: Float32Array,
  scratch: SamplerScratch,
  seen: readonly number[],
  counts: GeneratedCounts,
  options: SamplingParams,
  processors: ProcessorParams,
): Float32Array {
  if (!scratch.penalised || scratch.penalised.length !== full.length)
    scratch.penalised = new Float32Array(full.length);
  const out = scratch.penalised;
  out.set(full);
  applyRepetitionPenalty(out, seen, options.repetitionPenalty);
  applyPenalties(out, counts, processors.presencePenalty, processors.frequencyPenalty);
  applyLogitBias(out, processors.logitBias);
  return out;
}

/** Each session's sampler scratch (two vocabulary-sized arrays), made once rather than per generation. */
const scratches = new WeakMap<InferenceSession, SamplerScratch>();

/** The sampler scratch generate() uses for this session (one per session, reused by each generation). */
export function scratchFor(session: InferenceSession): SamplerScratch {
  const V = session.weights.config.vocabSize;
  let scratch = scratches.get(session);
  if (!scratch || scratch.vocabSize !== V) {
    scratch = new SamplerScratch(V);
    scratches.set(session, scratch);
  }
  return scratch;
}

/** Runs generate() to the end and returns its result. */
export function generateAll(
  session: InferenceSession,
  tokenizer: TokenBytes | null,
  promptIds: readonly number[],
  options: GenerateOptions,
): GenerateResult {
  const it = generate(session, tokenizer, promptIds, options);
  for (;;) {
    const next = it.next();
    if (next.done) return next.value;
  }
}
