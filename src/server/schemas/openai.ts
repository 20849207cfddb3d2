// Request schemas of the OpenAI-compatible routes (/v1/chat/completions, /v1/completions).
import * as s from './sampling.js';

export interface ChatBody extends s.SamplingBody {
  model?: string | null;
  messages: Array<{
    role: 'system' | 'developer' | 'user' | 'assistant';
    content: string | Array<{ type: 'text'; text: string }>;
  }>;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
}

export const chatBodySchema = {
  type: 'object',
  required: ['messages'],
  properties: {
    model: s.model,
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: 512,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: {
          role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant'] },
          content: {
            anyOf: [
              { type: 'string' },
              {
                type: 'array',
                maxItems: 64,
                items: {
                  type: 'object',
                  required: ['type', 'text'],
                  properties: { type: { type: 'string', enum: ['text'] }, text: { type: 'string' } },
                },
              },
            ],
          },
          name: { type: 'string', maxLength: 256 },
        },
      },
    },
    stream: s.stream,
    stream_options: s.streamOptions,
    max_tokens: s.tokenCount,
    max_completion_tokens: s.tokenCount,
    temperature: s.temperature,
    top_p: s.topP,
    top_k: s.topK,
    repetition_penalty: s.repetitionPenalty,
    seed: s.seed,
    stop: s.stop,
    n: s.n,
  },
} as const;

export interface CompletionBody extends s.SamplingBody {
  model?: string | null;
  prompt: string;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  max_tokens?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
}

export const completionBodySchema = {
  type: 'object',
  required: ['prompt'],
  properties: {
    model: s.model,
    prompt: { type: 'string', minLength: 1 },
    stream: s.stream,
    stream_options: s.streamOptions,
    max_tokens: s.tokenCount,
    temperature: s.temperature,
    top_p: s.topP,
    top_k: s.topK,
    repetition_penalty: s.repetitionPenalty,
    seed: s.seed,
    stop: s.stop,
    n: s.n,
  },
} as const;
