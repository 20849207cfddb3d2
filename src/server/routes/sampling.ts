// Builds worker jobs from a request body: the original project's sampling defaults, sanitised extremes, seeds per choice.
import { randomInt } from 'node:crypto';
import { ORIGINAL_SAMPLING } from '../../generate/original-sampling.js';
import { sanitizeSampling } from '../../generate/sampling-limits.js';
import { badRequest } from '../errors.js';
import type { OpenAiSamplingBody, SamplingBody } from '../schemas/sampling.js';
import type { JobRequest } from '../workers/protocol.js';

/** What a route adds to the sampling fields of its body. */
export interface JobExtras {
  promptIds?: number[];
  /** The prompt is a chat template's text: "<|endoftext|>" in it is plain text. */
  plainText?: boolean;
  logprobs?: number | null;
  echo?: boolean;
}

export function jobRequest(
  body: SamplingBody & Partial<OpenAiSamplingBody>,
  prompt: string,
  maxNewTokens: number | null,
  stop: string[],
  extras: JobExtras = {},
): JobRequest {
  const sampling = sanitizeSampling({
    temperature: body.temperature ?? ORIGINAL_SAMPLING.temperature,
    topK: body.top_k ?? ORIGINAL_SAMPLING.topK,
    topP: body.top_p ?? ORIGINAL_SAMPLING.topP,
    repetitionPenalty: body.repetition_penalty ?? ORIGINAL_SAMPLING.repetitionPenalty,
  });
  const request: JobRequest = {
    prompt,
    maxNewTokens,
    ...sampling,
    seed: body.seed ?? randomInt(2 ** 47),
    stop,
  };
  if (body.presence_penalty) request.presencePenalty = body.presence_penalty;
  if (body.frequency_penalty) request.frequencyPenalty = body.frequency_penalty;
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0)
    request.logitBias = Object.entries(body.logit_bias).map(([id, bias]) => [Number(id), bias]);
  if (extras.promptIds) request.promptIds = extras.promptIds;
  if (extras.plainText) request.plainText = true;
  if (extras.logprobs !== undefined && extras.logprobs !== null) request.logprobs = extras.logprobs;
  if (extras.echo) request.echo = true;
  return request;
}

/**
 * `n` jobs for one prompt: with a seed, choice i samples with seed + i (so choice 0 is what n = 1 gives);
 * without one, each choice draws its own.
 */
export function choiceRequests(base: JobRequest, n: number, seeded: boolean): JobRequest[] {
  return Array.from({ length: n }, (_, i) => ({
    ...base,
    seed: seeded ? base.seed + i : i === 0 ? base.seed : randomInt(2 ** 47),
  }));
}

/** Refuses a logit_bias key outside the model's vocabulary (the schema has checked it is a number). */
export function checkLogitBias(
  bias: Record<string, number> | null | undefined,
  vocabSize: number | null,
): void {
  if (!bias || vocabSize === null) return;
  for (const key of Object.keys(bias)) {
    if (Number(key) >= vocabSize)
      throw badRequest(
        `Invalid field 'logit_bias': token ${key} is outside the vocabulary of ${vocabSize} tokens.`,
        'logit_bias',
        'invalid_value',
      );
  }
}
