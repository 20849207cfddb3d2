// The generation loop: prefill the prompt, then sample → stop rules → stream text, one token at a time.
import type { InferenceSession } from '../engine/inference.js';
import { Rng } from '../engine/rng.js';
import {
  SamplerScratch,
  type SamplingParams,
  sampleFromTop,
  sampleToken,
  topCountNeeded,
} from './sampler.js';
import { StopMatcher } from './stop.js';
import { type TokenBytes, TokenTextStream } from './text-stream.js';

export interface GenerateOptions extends SamplingParams {
  /** Upper bound on generated tokens (the context may end generation earlier). */
  maxNewTokens: number;
  /** Seed for the sampler's RNG: same seed, same prompt, same options → same tokens. */
  seed: number;
  /** Text sequences that end generation; they are not part of the returned text. */
  stop?: readonly string[];
  /** End-of-text id that ends generation (not emitted); null to never stop on it. */
  eosTokenId: number | null;
}

export type FinishReason = 'stop' | 'length';

/** One streamed piece: the token just generated and the text it released (may be empty). */
export interface GenerateDelta {
  id: number;
  text: string;
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
  // Top-k and greedy sampling need only the k largest logits: the session's LM head answers them exactly,
  // however it finds them (see src/engine/head/); otherwise, or when it cannot tell, it returns all V logits.
  const k = topCountNeeded(options);
  const input = new Int32Array(1);
  let logits = session.next(promptIds, k, scratch.ids, scratch.values);
  let generated = 0;
  while (generated < options.maxNewTokens) {
    // Draw the coin even for greedy decoding so a seed means the same thing at every temperature.
    const coin = rng.random();
    const id = logits
      ? sampleToken(logits, options, coin, scratch, seen)
      : sampleFromTop(options, coin, scratch);
    generated++;
    if (options.eosTokenId !== null && id === options.eosTokenId) {
      finishReason = 'stop';
      endedByEos = true;
      break;
    }
    ids.push(id);
    if (options.repetitionPenalty !== 1) seen.push(id);
    const piece = stream ? stops.push(stream.push(id)) : '';
    text += piece;
    yield { id, text: piece };
    if (stops.done) {
      finishReason = 'stop';
      break;
    }
    if (generated >= options.maxNewTokens || session.remaining === 0) break;
    input[0] = id;
    logits = session.next(input, k, scratch.ids, scratch.values);
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
