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
  hotSamplingApplies,
  SamplerScratch,
  type SamplingParams,
  sampleFromTop,
  sampleHotToken,
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
 * Generates from `promptIds` on a fresh session. Yields deltas as tokens arrive; the return value is the
 * whole result. Stopping the iteration early (return/break) abandons generation at once.
 */
export function* generate(
  session: InferenceSession,
  tokenizer: TokenBytes | null,
  promptIds: readonly number[],
  options: GenerateOptions,
): Generator<GenerateDelta, GenerateResult, void> {
  if (promptIds.length === 0) throw new RangeError('the prompt must contain at least one token');
  const context = session.weights.config.nPositions;
  if (promptIds.length > context) {
    throw new RangeError(`prompt has ${promptIds.length} tokens, the context holds ${context}`);
  }
  const rng = new Rng(options.seed);
  const scratch = scratchFor(session);
  // Log-probabilities and the processors below need every step's full logits: the shortcuts that find
  // only the largest logits are skipped (they give the same tokens, so a seed means the same either way).
  const processors: ProcessorParams = { ...NO_PROCESSORS, ...definedOnly(options) };
  const processing = processorsActive(processors);
  const wantLogprobs = options.logprobs !== null && options.logprobs !== undefined;
  const fullLogits = processing || wantLogprobs;
  const counts = new GeneratedCounts();
  // With processors the repetition penalty is applied by `processed`, with the others, before the sampler.
  const afterRepetition: SamplingParams = { ...options, repetitionPenalty: 1 };
  // Without a tokenizer only ids are produced (text stays empty and stop sequences cannot apply).
  if (!tokenizer && options.stop && options.stop.length > 0)
    throw new Error('stop sequences need a tokenizer');
  const stream = tokenizer ? new TokenTextStream(tokenizer) : null;
  const stops = new StopMatcher(options.stop ?? []);
  const seen = options.repetitionPenalty !== 1 ? [...promptIds] : [];
  const ids: number[] = [];
  let text = '';
  let finishReason: FinishReason = 'length';
  let endedByEos = false;
  session.reset();
  // A model trained on part of the vocabulary: score its hot LM-head rows first and the rest only when the
  // bound on them cannot rule them out (same tokens as scoring everything; see sampleHotToken).
  const hotIds = session.hasHotHead ? session.weights.hotHead?.ids : undefined;
  const useHot = !fullLogits && hotIds !== undefined && hotSamplingApplies(options, hotIds.length);
  // Top-k and greedy sampling need only the k largest logits: the session finds them from the head's
  // group maxima without scanning all V (same ids and values; see InferenceSession.topLogits).
  const topCount = topCountNeeded(options);
  const useTop = !fullLogits && topCount > 0 && topCount <= session.topLimit;
  // A large vocabulary without hot rows: score the head in int8 first and compute only the rows that can be
  // among the k largest in f32 (same ids and values again; see InferenceSession.screenedTop).
  const useScreen = !fullLogits && !useHot && topCount > 0 && topCount <= session.screenLimit;
  let logits: Float32Array | null = null;
  if (useHot) logits = session.prefillHot(promptIds);
  else if (useScreen) session.prefillScreened(promptIds);
  else logits = session.prefill(promptIds);
  let generated = 0;
  while (generated < options.maxNewTokens) {
    // Draw the coin even for greedy decoding so a seed means the same thing at every temperature.
    const coin = rng.random();
    let id = -1;
    if (useHot && logits) {
      id = sampleHotToken(logits, hotIds, session.coldBound(), options, coin, scratch);
      if (id < 0) logits = session.completeLogits();
    } else if (useScreen) {
      if (session.screenedTop(topCount, scratch.ids, scratch.values))
        id = sampleFromTop(options, coin, scratch);
      else logits = session.completeLogits();
    }
    if (id < 0 && useTop && session.topLogits(topCount, scratch.ids, scratch.values))
      id = sampleFromTop(options, coin, scratch);
    let logprob: TokenLogprob | undefined;
    if (id < 0) {
      const full = logits ?? session.completeLogits();
      id = processing
        ? sampleToken(
            processed(full, scratch, seen, counts, options, processors),
            afterRepetition,
            coin,
            scratch,
          )
        : sampleToken(full, options, coin, scratch, seen);
      if (wantLogprobs) logprob = tokenLogprob(full, id, options.logprobs ?? 0);
    }
    generated++;
    if (options.eosTokenId !== null && id === options.eosTokenId) {
      finishReason = 'stop';
      endedByEos = true;
      break;
    }
    ids.push(id);
    if (options.repetitionPenalty !== 1) seen.push(id);
    if (processing) counts.add(id);
    const piece = stream ? stops.push(stream.push(id)) : '';
    text += piece;
    yield logprob ? { id, text: piece, logprob } : { id, text: piece };
    if (stops.done) {
      finishReason = 'stop';
      break;
    }
    if (generated >= options.maxNewTokens || session.remaining === 0) break;
    if (useHot) logits = session.stepHot(id);
    else if (useScreen) session.stepScreened(id);
    else logits = session.step(id);
  }
  if (stream && !stops.done) {
    const tail = stops.push(stream.flush()) + stops.flush();
    if (tail) {
      text += tail;
      yield { id: -1, text: tail };
    }
  }
  return { ids, text, finishReason, endedByEos, promptTokens: promptIds.length, completionTokens: generated };
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

function scratchFor(session: InferenceSession): SamplerScratch {
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
