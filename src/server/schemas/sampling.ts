// JSON-schema pieces shared by the generation routes: sampling knobs, seeds, stop sequences and the OpenAI extras.
// Fields that take several shapes pick their branch with if/then on the value's type, so a bad value is
// reported by the rule it breaks ("must NOT have more than 16 items") rather than by a branch it never meant.

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export const temperature = { type: ['number', 'null'], minimum: 0, maximum: 2 } as const;
export const topP = { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 } as const;
export const topK = { type: ['integer', 'null'], minimum: 0, maximum: 1_000_000 } as const;
export const repetitionPenalty = { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 10 } as const;
export const seed = { type: ['integer', 'null'], minimum: -MAX_SAFE, maximum: MAX_SAFE } as const;
/** A token count; the context check happens after tokenization and names the real limit. */
export const tokenCount = { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 } as const;
/** /v1/completions' max_tokens: 0 scores an echoed prompt without generating (checked by the route). */
export const tokenCountOrZero = { type: ['integer', 'null'], minimum: 0, maximum: 1_000_000 } as const;

/** Stop sequences a request may give (vLLM and llama.cpp take more than OpenAI's 4). */
export const MAX_STOP = 16;
const stopString = { type: 'string', minLength: 1, maxLength: 256 } as const;
export const stop = {
  type: ['string', 'array', 'null'],
  if: { type: 'string' },
  then: stopString,
  else: {
    if: { type: 'array' },
    then: { maxItems: MAX_STOP, items: stopString },
  },
} as const;
export const stream = { type: ['boolean', 'null'] } as const;
export const streamOptions = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    include_usage: { type: ['boolean', 'null'] },
    /** Accepted without effect: no obfuscation padding is added. */
    include_obfuscation: { type: ['boolean', 'null'] },
  },
} as const;
/** Choices per request. */
export const MAX_N = 8;
export const n = { type: ['integer', 'null'], minimum: 1, maximum: MAX_N } as const;
export const model = { type: ['string', 'null'], maxLength: 256 } as const;
/** OpenAI's presence_penalty and frequency_penalty. */
export const penalty = { type: ['number', 'null'], minimum: -2, maximum: 2 } as const;
/** Entries a logit_bias may hold. */
export const MAX_LOGIT_BIAS = 1024;
export const logitBias = {
  type: ['object', 'null'],
  maxProperties: MAX_LOGIT_BIAS,
  propertyNames: { pattern: '^(0|[1-9][0-9]{0,8})$' },
  additionalProperties: { type: 'number', minimum: -100, maximum: 100 },
} as const;
/** The most alternatives a request may ask for per position (OpenAI's chat limit; its completions stop at 5). */
export const MAX_LOGPROBS = 20;
export const topLogprobs = { type: ['integer', 'null'], minimum: 0, maximum: MAX_LOGPROBS } as const;

/** Accepted without effect: OpenAI's end-user id and request metadata. */
export const user = { type: ['string', 'null'], maxLength: 256 } as const;
export const metadata = {
  type: ['object', 'null'],
  maxProperties: 16,
  additionalProperties: { type: 'string', maxLength: 512 },
} as const;

/** Fields every generation route accepts. */
export interface SamplingBody {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  repetition_penalty?: number | null;
  seed?: number | null;
}

/** The OpenAI routes' extra sampling fields. */
export interface OpenAiSamplingBody extends SamplingBody {
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  n?: number | null;
}

export function stopList(value: string | string[] | null | undefined): string[] {
  if (value === undefined || value === null) return [];
  return typeof value === 'string' ? [value] : value;
}
