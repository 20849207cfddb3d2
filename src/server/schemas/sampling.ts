// JSON-schema pieces shared by the generation routes: sampling knobs, seeds and stop sequences.

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export const temperature = { type: ['number', 'null'], minimum: 0, maximum: 2 } as const;
export const topP = { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 } as const;
export const topK = { type: ['integer', 'null'], minimum: 0, maximum: 1_000_000 } as const;
export const repetitionPenalty = { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 10 } as const;
export const seed = { type: ['integer', 'null'], minimum: -MAX_SAFE, maximum: MAX_SAFE } as const;
/** A token count; the context check happens after tokenization and names the real limit. */
export const tokenCount = { type: ['integer', 'null'], minimum: 1, maximum: 1_000_000 } as const;
export const stop = {
  anyOf: [
    { type: 'string', minLength: 1, maxLength: 256 },
    { type: 'array', maxItems: 4, items: { type: 'string', minLength: 1, maxLength: 256 } },
    { type: 'null' },
  ],
} as const;
export const stream = { type: ['boolean', 'null'] } as const;
export const streamOptions = {
  type: ['object', 'null'],
  properties: { include_usage: { type: ['boolean', 'null'] } },
} as const;
/** Only one choice per request. */
export const n = { type: ['integer', 'null'], minimum: 1, maximum: 1 } as const;
export const model = { type: ['string', 'null'], maxLength: 256 } as const;

/** Fields every generation route accepts. */
export interface SamplingBody {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  repetition_penalty?: number | null;
  seed?: number | null;
}

export function stopList(value: string | string[] | null | undefined): string[] {
  if (value === undefined || value === null) return [];
  return typeof value === 'string' ? [value] : value;
}
