// Request schema of the original API, POST /generate.
import * as s from './sampling.js';

export interface GenerateBody extends s.SamplingBody {
  prompt: string;
  max_new_tokens?: number | null;
}

export const generateBodySchema = {
  type: 'object',
  required: ['prompt'],
  additionalProperties: false,
  properties: {
    prompt: { type: 'string', minLength: 1 },
    max_new_tokens: s.tokenCount,
    temperature: s.temperature,
    top_k: s.topK,
    top_p: s.topP,
    repetition_penalty: s.repetitionPenalty,
    seed: s.seed,
  },
} as const;
