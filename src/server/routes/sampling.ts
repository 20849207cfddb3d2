// Builds a worker job from a request body: the original project's sampling defaults and a random seed when none is given.
import { randomInt } from 'node:crypto';
import { ORIGINAL_SAMPLING } from '../../generate/original-sampling.js';
import type { SamplingBody } from '../schemas/sampling.js';
import type { JobRequest } from '../workers/protocol.js';

export function jobRequest(
  body: SamplingBody,
  prompt: string,
  maxNewTokens: number | null,
  stop: string[],
): JobRequest {
  return {
    prompt,
    maxNewTokens,
    temperature: body.temperature ?? ORIGINAL_SAMPLING.temperature,
    topK: body.top_k ?? ORIGINAL_SAMPLING.topK,
    topP: body.top_p ?? ORIGINAL_SAMPLING.topP,
    repetitionPenalty: body.repetition_penalty ?? ORIGINAL_SAMPLING.repetitionPenalty,
    seed: body.seed ?? randomInt(2 ** 47),
    stop,
  };
}
