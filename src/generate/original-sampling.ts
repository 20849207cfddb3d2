// The original project's sampling defaults, in a module of their own so the HTTP thread reads them without loading the sampler.
import type { SamplingParams } from './sampler.js';

/** Default sampling of the original project's /generate route (HF generate with these settings). */
export const ORIGINAL_SAMPLING: Readonly<SamplingParams> = {
  temperature: 1,
  topK: 50,
  topP: 0.95,
  repetitionPenalty: 1,
};
