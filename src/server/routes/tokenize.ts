// POST /tokenize, /detokenize and /apply-template in llama.cpp's shapes (with vLLM's fields): ids of a text or of a
// chat as the template lays it out, and text of ids. The tokenizer runs on a worker, never on the event loop.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { formatChat } from '../../generate/chat-template.js';
import { ORIGINAL_SAMPLING } from '../../generate/original-sampling.js';
import { completeText } from '../completion.js';
import { badRequest } from '../errors.js';
import {
  type ApplyTemplateBody,
  applyTemplateBodySchema,
  type DetokenizeBody,
  detokenizeBodySchema,
  nonTextPart,
  type TokenizeBody,
  tokenizeBodySchema,
} from '../schemas/openai.js';
import type { JobRequest } from '../workers/protocol.js';
import { chatMessages, checkModel } from './openai.js';

function task(
  kind: 'tokenize' | 'detokenize',
  prompt: string,
  options: { promptIds?: number[]; withPieces?: boolean; plainText?: boolean } = {},
): JobRequest {
  return { ...ORIGINAL_SAMPLING, prompt, ...options, maxNewTokens: 0, seed: 0, stop: [], task: kind };
}

/** The chat a request holds, laid out as /v1/chat/completions lays it out (without the final "Bot:" if asked). */
function chatPrompt(
  app: FastifyInstance,
  messages: TokenizeBody['messages'] & {},
  generationPrompt: boolean,
) {
  const prompt = formatChat(app.settings.systemPrompt, chatMessages(messages));
  return generationPrompt ? prompt : prompt.slice(0, -'\nBot:'.length);
}

async function refuseNonText(request: FastifyRequest) {
  const part = nonTextPart(request.body);
  if (part) throw badRequest(part.message, part.field, 'unsupported_value');
}

export async function tokenizeRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: TokenizeBody }>(
    '/tokenize',
    { schema: { body: tokenizeBodySchema }, preValidation: refuseNonText },
    async (request, reply: FastifyReply) => {
      const body = request.body;
      checkModel(body.model);
      const given = (['content', 'prompt', 'messages'] as const).filter((k) => body[k] !== undefined);
      if (given.length !== 1)
        throw badRequest(
          given.length === 0
            ? "Missing required field 'content': send the text as content (or prompt), or the chat as messages."
            : `Send one of content, prompt and messages, not ${given.join(' and ')}.`,
          given[1] ?? 'content',
        );
      const text = body.messages
        ? chatPrompt(app, body.messages, body.add_generation_prompt !== false)
        : (body.content ?? body.prompt ?? '');
      const result =
        text === ''
          ? { tokenized: { json: '[]', count: 0 } }
          : await completeText(request, reply, {
              // A chat is tokenized as the chat route tokenizes it ("<|endoftext|>" as plain text).
              request: task('tokenize', text, {
                withPieces: body.with_pieces === true,
                plainText: body.messages !== undefined,
              }),
              promptParam: given[0],
              maxParam: given[0],
            });
      const { json, count } = result.tokenized ?? { json: '[]', count: 0 };
      const context = app.generation.model?.config.nPositions ?? null;
      // The worker wrote the tokens' JSON; this thread only wraps it.
      return reply
        .type('application/json; charset=utf-8')
        .send(`{"tokens":${json},"count":${count},"max_model_len":${JSON.stringify(context)}}`);
    },
  );

  app.post<{ Body: DetokenizeBody }>(
    '/detokenize',
    { schema: { body: detokenizeBodySchema } },
    async (request, reply) => {
      const body = request.body;
      checkModel(body.model);
      const vocabSize = app.generation.model?.config.vocabSize ?? null;
      const at = vocabSize === null ? -1 : body.tokens.findIndex((id) => id >= vocabSize);
      if (at >= 0)
        throw badRequest(
          `Invalid field 'tokens[${at}]': token ${body.tokens[at]} is outside the vocabulary of ${vocabSize} tokens.`,
          `tokens[${at}]`,
          'invalid_value',
        );
      if (body.tokens.length === 0) return { content: '', prompt: '' };
      const result = await completeText(request, reply, {
        request: task('detokenize', '', { promptIds: body.tokens }),
        promptParam: 'tokens',
        maxParam: 'tokens',
      });
      return { content: result.text, prompt: result.text };
    },
  );

  app.post<{ Body: ApplyTemplateBody }>(
    '/apply-template',
    { schema: { body: applyTemplateBodySchema }, preValidation: refuseNonText },
    async (request) => ({ prompt: chatPrompt(app, request.body.messages, true) }),
  );
}
