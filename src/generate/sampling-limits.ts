// Where extreme sampling values are sanitised: the limits a request's temperature and penalties are held to.
// In a module of its own (no kernels) so the HTTP thread applies them before a job reaches a worker.
import type { SamplingParams } from './sampler.js';

/**
 * Temperatures above 0 but below this are sampled as 0 (greedy): the limit the distribution approaches, and
 * what the sampler computes anyway wherever 1/temperature would overflow.
 */
export const MIN_TEMPERATURE = 1e-6;

/**
 * Repetition penalties below this are applied as this: dividing a logit by a smaller penalty only makes the
 * already-certain choice more certain, and by a penalty near 0 overflows to infinity.
 */
export const MIN_REPETITION_PENALTY = 1e-3;

/** The parameters the sampler runs with for what a request asked (values already inside the schema's range). */
export function sanitizeSampling<T extends SamplingParams>(params: T): T {
  const temperature = params.temperature < MIN_TEMPERATURE ? 0 : params.temperature;
  const repetitionPenalty = Math.max(params.repetitionPenalty, MIN_REPETITION_PENALTY);
  return { ...params, temperature, repetitionPenalty };
}
