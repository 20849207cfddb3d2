// Request schemas of the OpenAI-compatible routes (/v1/chat/completions, /v1/completions, /tokenize, /detokenize)
// and the OpenAI fields they refuse by name. Strict: a field not listed here is refused as unknown.
import * as s from './sampling.js';

/** The largest token id a request may name (before the check against the model's vocabulary). */
const tokenId = { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 } as const;
/** Prompts one /v1/completions request may batch. */
export const MAX_PROMPTS = 64;

export interface TextPart {
  type: 'text';
  text: string;
}

export interface ChatBody extends s.OpenAiSamplingBody {
  model?: string | null;
  messages: Array<{
    role: 'system' | 'developer' | 'user' | 'assistant';
    content: string | TextPart[] | null;
    name?: string;
  }>;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  stop?: string | string[] | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
}

const textPart = {
  type: 'object',
  required: ['type', 'text'],
  additionalProperties: false,
  properties: { type: { type: 'string', enum: ['text'] }, text: { type: 'string' } },
} as const;

const message = {
  type: 'object',
  required: ['role', 'content'],
  additionalProperties: false,
  properties: {
    role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant'] },
    content: {
      type: ['string', 'array', 'null'],
      if: { type: 'array' },
      then: { maxItems: 64, items: textPart },
    },
    /** Accepted without effect: the template has no participant names. */
    name: { type: 'string', maxLength: 256 },
  },
} as const;

/** Fields every OpenAI generation route takes. */
const common = {
  model: s.model,
  stream: s.stream,
  stream_options: s.streamOptions,
  temperature: s.temperature,
  top_p: s.topP,
  top_k: s.topK,
  repetition_penalty: s.repetitionPenalty,
  presence_penalty: s.penalty,
  frequency_penalty: s.penalty,
  logit_bias: s.logitBias,
  seed: s.seed,
  stop: s.stop,
  n: s.n,
  user: s.user,
  metadata: s.metadata,
  // Accepted with their neutral values only (refuseUnsupported answers the others by name).
  store: {},
  service_tier: {},
} as const;

export const chatBodySchema = {
  type: 'object',
  required: ['messages'],
  additionalProperties: false,
  properties: {
    ...common,
    messages: { type: 'array', minItems: 1, maxItems: 512, items: message },
    max_tokens: s.tokenCount,
    max_completion_tokens: s.tokenCount,
    logprobs: { type: ['boolean', 'null'] },
    top_logprobs: s.topLogprobs,
    // Accepted with their neutral values only (see CHAT_UNSUPPORTED).
    tools: {},
    tool_choice: {},
    functions: {},
    function_call: {},
    response_format: {},
    modalities: {},
    audio: {},
    prediction: {},
    reasoning_effort: {},
    verbosity: {},
    web_search_options: {},
    /** Accepted without effect: nothing runs tools here. */
    parallel_tool_calls: { type: ['boolean', 'null'] },
    /** Accepted without effect: nothing is cached between requests. */
    prompt_cache_key: { type: ['string', 'null'], maxLength: 1024 },
    safety_identifier: s.user,
  },
} as const;

export type PromptValue = string | string[] | number[] | number[][];

export interface CompletionBody extends s.OpenAiSamplingBody {
  model?: string | null;
  prompt: PromptValue;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  max_tokens?: number | null;
  stop?: string | string[] | null;
  logprobs?: number | null;
  echo?: boolean | null;
  best_of?: number | null;
  suffix?: string | null;
}

/** A prompt: text, a batch of texts, token ids, or a batch of token-id lists (the first item decides). */
const prompt = {
  type: ['string', 'array'],
  if: { type: 'string' },
  then: { minLength: 1 },
  else: {
    minItems: 1,
    if: { items: [{ type: 'integer' }] },
    then: { items: tokenId },
    else: {
      maxItems: MAX_PROMPTS,
      if: { items: [{ type: 'array' }] },
      then: { items: { type: 'array', minItems: 1, items: tokenId } },
      else: { items: { type: 'string', minLength: 1 } },
    },
  },
} as const;

export const completionBodySchema = {
  type: 'object',
  required: ['prompt'],
  additionalProperties: false,
  properties: {
    ...common,
    prompt,
    max_tokens: s.tokenCountOrZero,
    logprobs: s.topLogprobs,
    echo: { type: ['boolean', 'null'] },
    // Accepted with their neutral values only (see COMPLETION_UNSUPPORTED).
    best_of: {},
    suffix: {},
  },
} as const;

export interface TokenizeBody {
  model?: string | null;
  content?: string;
  prompt?: string;
  messages?: ChatBody['messages'];
  add_special?: boolean | null;
  add_generation_prompt?: boolean | null;
  with_pieces?: boolean | null;
}

/** llama.cpp's /tokenize ({content}) and vLLM's ({prompt} or {messages}: the chat template applied). */
export const tokenizeBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    model: s.model,
    content: { type: 'string' },
    prompt: { type: 'string' },
    messages: { type: 'array', minItems: 1, maxItems: 512, items: message },
    /** Accepted without effect: GPT-2 adds no special tokens to a text. */
    add_special: { type: ['boolean', 'null'] },
    /** With messages: end with the template's "Bot:" as a chat request does (default true). */
    add_generation_prompt: { type: ['boolean', 'null'] },
    with_pieces: { type: ['boolean', 'null'] },
  },
} as const;

export interface DetokenizeBody {
  model?: string | null;
  tokens: number[];
}

export const detokenizeBodySchema = {
  type: 'object',
  required: ['tokens'],
  additionalProperties: false,
  properties: { model: s.model, tokens: { type: 'array', items: tokenId } },
} as const;

export interface ApplyTemplateBody {
  messages: ChatBody['messages'];
}

/** llama.cpp's /apply-template: the prompt a chat request would run. */
export const applyTemplateBodySchema = {
  type: 'object',
  required: ['messages'],
  additionalProperties: false,
  properties: { messages: { type: 'array', minItems: 1, maxItems: 512, items: message } },
} as const;

/** An OpenAI field this server cannot honour unless it holds its neutral value. */
export interface Unsupported {
  field: string;
  neutral(value: unknown, body: Record<string, unknown>): boolean;
  /** Why it is refused, completing "'field' is not supported: …". */
  reason: string;
}

const isNull = (v: unknown) => v === null || v === undefined;
const emptyOrNull = (v: unknown) => isNull(v) || (Array.isArray(v) && v.length === 0);
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const NO_TOOLS = 'this model has no tool or function calling';

const SHARED_UNSUPPORTED: Unsupported[] = [
  {
    field: 'store',
    neutral: (v) => isNull(v) || v === false,
    reason: 'completions are never stored here (send false or leave it out)',
  },
  {
    field: 'service_tier',
    neutral: (v) => isNull(v) || v === 'auto' || v === 'default',
    reason: "there is one service tier ('auto' or 'default')",
  },
];

export const CHAT_UNSUPPORTED: Unsupported[] = [
  ...SHARED_UNSUPPORTED,
  { field: 'tools', neutral: emptyOrNull, reason: NO_TOOLS },
  { field: 'functions', neutral: emptyOrNull, reason: NO_TOOLS },
  { field: 'tool_choice', neutral: (v) => isNull(v) || v === 'none', reason: `${NO_TOOLS} (only 'none')` },
  {
    field: 'function_call',
    neutral: (v) => isNull(v) || v === 'none',
    reason: `${NO_TOOLS} (only 'none')`,
  },
  {
    field: 'response_format',
    neutral: (v) => isNull(v) || (isObject(v) && v.type === 'text' && Object.keys(v).length === 1),
    reason: 'structured output (json_object, json_schema) is not available: only {"type": "text"}',
  },
  {
    field: 'modalities',
    neutral: (v) => isNull(v) || (Array.isArray(v) && v.length === 1 && v[0] === 'text'),
    reason: "this model writes text only (['text'])",
  },
  { field: 'audio', neutral: isNull, reason: 'this model writes text only' },
  { field: 'prediction', neutral: isNull, reason: 'predicted outputs are not available' },
  { field: 'reasoning_effort', neutral: isNull, reason: 'this is not a reasoning model' },
  { field: 'verbosity', neutral: isNull, reason: 'the reply length is set by max_tokens only' },
  { field: 'web_search_options', neutral: isNull, reason: 'this server has no web search' },
];

export const COMPLETION_UNSUPPORTED: Unsupported[] = [
  ...SHARED_UNSUPPORTED,
  {
    field: 'best_of',
    neutral: (v, body) => isNull(v) || v === (body.n ?? 1),
    reason: 'choices are not ranked server-side (best_of must equal n)',
  },
  {
    field: 'suffix',
    neutral: (v) => isNull(v) || v === '',
    reason: 'this model does not insert text (no suffix)',
  },
];

/** The first field of `body` that holds a value this server cannot honour, and why; null when none does. */
export function unsupportedField(
  body: unknown,
  table: readonly Unsupported[],
): { field: string; message: string } | null {
  if (!isObject(body)) return null;
  for (const entry of table) {
    if (!Object.hasOwn(body, entry.field)) continue;
    if (entry.neutral(body[entry.field], body)) continue;
    return { field: entry.field, message: `'${entry.field}' is not supported: ${entry.reason}.` };
  }
  return null;
}

/**
 * A content part of a type other than text (image_url, input_audio, file, …), named with its place; null
 * when every part is text (or the messages are malformed: the schema then says how).
 */
export function nonTextPart(body: unknown): { field: string; message: string } | null {
  if (!isObject(body) || !Array.isArray(body.messages)) return null;
  for (let i = 0; i < body.messages.length; i++) {
    const content: unknown = (body.messages[i] as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (let j = 0; j < content.length; j++) {
      const type = (content[j] as { type?: unknown } | null)?.type;
      if (typeof type !== 'string' || type === 'text') continue;
      const field = `messages[${i}].content[${j}].type`;
      return {
        field,
        message: `Content part type '${type.slice(0, 40)}' in ${field} is not supported: this model reads text only (parts of type 'text').`,
      };
    }
  }
  return null;
}
