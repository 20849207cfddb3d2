// POST /generate: the original project's API ({prompt} → {response}) with its template and defaults.
import type { FastifyInstance } from 'fastify';
import { CHAT_STOP, cleanReply, formatPrompt } from '../../generate/chat-template.js';
import { completeText } from '../completion.js';
import { type GenerateBody, generateBodySchema } from '../schemas/generate.js';
import { jobRequest } from './sampling.js';

/** The original route generated 50 new tokens. */
export const GENERATE_MAX_NEW_TOKENS = 50;

export async function generateRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: GenerateBody }>(
    '/generate',
    { schema: { body: generateBodySchema } },
    async (request, reply) => {
      const body = request.body;
      const prompt = formatPrompt(app.settings.systemPrompt, body.prompt);
      const maxNewTokens = body.max_new_tokens ?? GENERATE_MAX_NEW_TOKENS;
      const result = await completeText(request, reply, {
        request: jobRequest(body, prompt, maxNewTokens, [...CHAT_STOP], { plainText: true }),
        promptParam: 'prompt',
        maxParam: 'max_new_tokens',
      });
      return { response: cleanReply(result.text) };
    },
  );
}
