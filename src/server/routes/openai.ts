// The OpenAI-compatible API: /v1/models, /v1/chat/completions and /v1/completions, streamed or whole.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { CHAT_STOP, type ChatMessage, formatChat } from '../../generate/chat-template.js';
import { completeText, streamText } from '../completion.js';
import {
  type ChatBody,
  type CompletionBody,
  chatBodySchema,
  completionBodySchema,
} from '../schemas/openai.js';
import { stopList } from '../schemas/sampling.js';
import type { JobResult } from '../workers/pool.js';
import { jobRequest } from './sampling.js';

export const MODEL_ID = 'tiny-llm';
/** OpenAI's default max_tokens for /v1/completions. */
const COMPLETIONS_MAX_TOKENS = 16;
const STARTED = Math.floor(Date.now() / 1000);

function usage(r: JobResult) {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
  };
}

function messageText(content: ChatBody['messages'][number]['content']): string {
  return typeof content === 'string' ? content : content.map((part) => part.text).join('');
}

export async function openaiRoutes(app: FastifyInstance): Promise<void> {
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{ id: MODEL_ID, object: 'model', created: STARTED, owned_by: 'tiny-llm-cicd' }],
  }));

  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request, reply) => {
    if (request.params.id !== MODEL_ID) {
      return reply.code(404).send({
        error: {
          message: `The model '${request.params.id.slice(0, 100)}' does not exist; this server has '${MODEL_ID}'.`,
          type: 'invalid_request_error',
          param: 'model',
          code: 'model_not_found',
        },
      });
    }
    return { id: MODEL_ID, object: 'model', created: STARTED, owned_by: 'tiny-llm-cicd' };
  });

  app.post<{ Body: ChatBody }>(
    '/v1/chat/completions',
    { schema: { body: chatBodySchema } },
    async (request, reply) => {
      const body = request.body;
      const messages: ChatMessage[] = body.messages.map((m) => ({
        role: m.role === 'developer' ? 'system' : m.role,
        content: messageText(m.content),
      }));
      const prompt = formatChat(app.settings.systemPrompt, messages);
      const maxParam = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
      const spec = {
        request: jobRequest(body, prompt, body.max_completion_tokens ?? body.max_tokens ?? null, [
          ...CHAT_STOP,
          ...stopList(body.stop),
        ]),
        promptParam: 'messages',
        maxParam,
      };
      const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
      const created = Math.floor(Date.now() / 1000);
      const fingerprint = app.generation.model?.fingerprint ?? null;
      const base = { id, created, model: MODEL_ID, system_fingerprint: fingerprint };

      if (!body.stream) {
        const result = await completeText(request, reply, spec);
        return {
          ...base,
          object: 'chat.completion',
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: result.text.trimStart() },
              logprobs: null,
              finish_reason: result.finishReason,
            },
          ],
          usage: usage(result),
        };
      }
      const chunk = (delta: object, finishReason: string | null) => ({
        ...base,
        object: 'chat.completion.chunk',
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      });
      // The reply starts at its first visible character, exactly as the non-streamed content does.
      let leading = true;
      return streamText(request, reply, spec, {
        first: () => chunk({ role: 'assistant', content: '' }, null),
        delta: (text) => {
          const piece = leading ? text.trimStart() : text;
          if (piece === '') return null;
          leading = false;
          return chunk({ content: piece }, null);
        },
        last: (result) => {
          const out: unknown[] = [chunk({}, result.finishReason)];
          if (body.stream_options?.include_usage)
            out.push({ ...base, object: 'chat.completion.chunk', choices: [], usage: usage(result) });
          return out;
        },
      });
    },
  );

  app.post<{ Body: CompletionBody }>(
    '/v1/completions',
    { schema: { body: completionBodySchema } },
    async (request, reply) => {
      const body = request.body;
      const spec = {
        request: jobRequest(
          body,
          body.prompt,
          body.max_tokens ?? COMPLETIONS_MAX_TOKENS,
          stopList(body.stop),
        ),
        promptParam: 'prompt',
        maxParam: 'max_tokens',
      };
      const base = {
        id: `cmpl-${randomUUID().replace(/-/g, '')}`,
        object: 'text_completion',
        created: Math.floor(Date.now() / 1000),
        model: MODEL_ID,
        system_fingerprint: app.generation.model?.fingerprint ?? null,
      };
      if (!body.stream) {
        const result = await completeText(request, reply, spec);
        return {
          ...base,
          choices: [{ text: result.text, index: 0, logprobs: null, finish_reason: result.finishReason }],
          usage: usage(result),
        };
      }
      const chunk = (text: string, finishReason: string | null) => ({
        ...base,
        choices: [{ text, index: 0, logprobs: null, finish_reason: finishReason }],
      });
      return streamText(request, reply, spec, {
        first: () => null,
        delta: (text) => chunk(text, null),
        last: (result) => {
          const out: unknown[] = [chunk('', result.finishReason)];
          if (body.stream_options?.include_usage) out.push({ ...base, choices: [], usage: usage(result) });
          return out;
        },
      });
    },
  );
}
