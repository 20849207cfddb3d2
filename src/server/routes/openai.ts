// The OpenAI-compatible API: /v1/models, /v1/chat/completions and /v1/completions (n choices, prompt batches,
// log-probabilities, echo), streamed or whole.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CHAT_STOP, type ChatMessage, formatChat } from '../../generate/chat-template.js';
import type { DescribedLogprob, DescribedPromptToken, DescribedTop } from '../../generate/logprobs.js';
import { completeAll, streamAll } from '../completion.js';
import { ApiError, badRequest } from '../errors.js';
import {
  CHAT_UNSUPPORTED,
  type ChatBody,
  COMPLETION_UNSUPPORTED,
  type CompletionBody,
  chatBodySchema,
  completionBodySchema,
  nonTextPart,
  type PromptValue,
  type Unsupported,
  unsupportedField,
} from '../schemas/openai.js';
import { stopList } from '../schemas/sampling.js';
import type { JobResult } from '../workers/job.js';
import type { EchoedPrompt } from '../workers/protocol.js';
import { checkLogitBias, choiceRequests, jobRequest } from './sampling.js';

export const MODEL_ID = 'tiny-llm';
/** OpenAI's default max_tokens for /v1/completions. */
const COMPLETIONS_MAX_TOKENS = 16;
const STARTED = Math.floor(Date.now() / 1000);

/** Prompt tokens once per prompt (from the first choice of each), completion tokens of every choice. */
function usage(results: JobResult[], firstChoiceOfPrompt: number[]) {
  let prompt = 0;
  let completion = 0;
  for (const i of firstChoiceOfPrompt) prompt += results[i].promptTokens;
  for (const r of results) completion += r.completionTokens;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function messageText(content: ChatBody['messages'][number]['content']): string {
  if (content === null) return '';
  return typeof content === 'string' ? content : content.map((part) => part.text).join('');
}

/** The chat messages of a request as the template takes them (developer messages are system messages). */
export function chatMessages(messages: ChatBody['messages']): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: messageText(m.content),
  }));
}

/** A model name other than ours is a 404, as OpenAI answers it. */
export function checkModel(model: string | null | undefined): void {
  if (model === undefined || model === null || model === MODEL_ID) return;
  throw new ApiError(
    404,
    `The model '${model.slice(0, 100)}' does not exist; this server has '${MODEL_ID}'.`,
    'invalid_request_error',
    'model',
    'model_not_found',
  );
}

/** A preValidation hook refusing, by name, OpenAI fields and content parts this server cannot honour. */
function refuseUnsupported(table: readonly Unsupported[]) {
  return async (request: FastifyRequest) => {
    const found = unsupportedField(request.body, table) ?? null;
    if (found) throw badRequest(found.message, found.field, 'unsupported_parameter');
    const part = nonTextPart(request.body);
    if (part) throw badRequest(part.message, part.field, 'unsupported_value');
  };
}

/**
 * The model entry of /v1/models: OpenAI's fields, then its context (OpenAI's field names have none; vLLM's and
 * others' do), its size and where it came from (see ModelOrigin).
 */
function modelEntry(app: FastifyInstance) {
  const model = app.generation.model;
  const context = model?.config.nPositions ?? null;
  return {
    id: MODEL_ID,
    object: 'model',
    created: STARTED,
    owned_by: 'tiny-llm-cicd',
    context_length: context,
    max_model_len: context,
    parameters: model?.parameters ?? null,
    format: model?.format ?? null,
    source: model?.source ?? null,
  };
}

// --- log-probabilities in the two OpenAI shapes ---

const chatTop = (t: DescribedTop) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes });

/** Chat's logprobs.content entries: each token with its bytes and its top_logprobs. */
function chatLogprobs(entries: DescribedLogprob[]) {
  return entries.map((e) => ({ ...chatTop(e), top_logprobs: e.top.map(chatTop) }));
}

interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

/** The alternatives as /v1/completions gives them: one object, most likely first, with the chosen token in it. */
function legacyTop(
  top: DescribedTop[] | null,
  chosen: { token: string; logprob: number | null },
): Record<string, number> | null {
  if (top === null || chosen.logprob === null) return null;
  const out: Record<string, number> = {};
  for (const t of top) if (!Object.hasOwn(out, t.token)) out[t.token] = t.logprob;
  if (!Object.hasOwn(out, chosen.token)) out[chosen.token] = chosen.logprob;
  return out;
}

/** /v1/completions' logprobs object; text_offset counts from the start of the choice's text (shift). */
function legacyLogprobs(
  entries: ReadonlyArray<DescribedLogprob | DescribedPromptToken>,
  shift: number,
): LegacyLogprobs {
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => legacyTop(e.top, e)),
    text_offset: entries.map((e) => e.offset + shift),
  };
}

function concatLegacy(a: LegacyLogprobs, b: LegacyLogprobs): LegacyLogprobs {
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: [...a.top_logprobs, ...b.top_logprobs],
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}

// --- prompts of /v1/completions ---

interface Prompt {
  text: string;
  ids?: number[];
  /** The field a context-length error names. */
  param: string;
}

/** The prompts of a /v1/completions body (the schema has checked their shapes); token ids checked against the vocabulary. */
function prompts(value: PromptValue, vocabSize: number | null): Prompt[] {
  const checkIds = (ids: number[], param: string) => {
    if (vocabSize === null) return;
    const at = ids.findIndex((id) => id >= vocabSize);
    if (at >= 0)
      throw badRequest(
        `Invalid field '${param}[${at}]': token ${ids[at]} is outside the vocabulary of ${vocabSize} tokens.`,
        `${param}[${at}]`,
        'invalid_value',
      );
  };
  if (typeof value === 'string') return [{ text: value, param: 'prompt' }];
  if (typeof value[0] === 'number') {
    const ids = value as number[];
    checkIds(ids, 'prompt');
    return [{ text: '', ids, param: 'prompt' }];
  }
  return (value as Array<string | number[]>).map((p, i) => {
    const param = `prompt[${i}]`;
    if (typeof p === 'string') return { text: p, param };
    checkIds(p, param);
    return { text: '', ids: p, param };
  });
}

function completionId(prefix: string): string {
  return `${prefix}-${randomUUID().replace(/-/g, '')}`;
}

export async function openaiRoutes(app: FastifyInstance): Promise<void> {
  app.get('/v1/models', async () => ({ object: 'list', data: [modelEntry(app)] }));

  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    checkModel(request.params.id);
    return modelEntry(app);
  });

  app.post<{ Body: ChatBody }>(
    '/v1/chat/completions',
    { schema: { body: chatBodySchema }, preValidation: refuseUnsupported(CHAT_UNSUPPORTED) },
    async (request, reply) => chatCompletion(app, request, reply),
  );

  app.post<{ Body: CompletionBody }>(
    '/v1/completions',
    { schema: { body: completionBodySchema }, preValidation: refuseUnsupported(COMPLETION_UNSUPPORTED) },
    async (request, reply) => textCompletion(app, request, reply),
  );
}

async function chatCompletion(
  app: FastifyInstance,
  request: FastifyRequest<{ Body: ChatBody }>,
  reply: FastifyReply,
) {
  const body = request.body;
  checkModel(body.model);
  checkLogitBias(body.logit_bias, app.generation.model?.config.vocabSize ?? null);
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && body.logprobs !== true)
    throw badRequest(
      "Invalid field 'top_logprobs': it needs logprobs: true.",
      'top_logprobs',
      'invalid_value',
    );
  const logprobs = body.logprobs === true ? (body.top_logprobs ?? 0) : null;
  const prompt = formatChat(app.settings.systemPrompt, chatMessages(body.messages));
  const maxParam = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const n = body.n ?? 1;
  const base = jobRequest(
    body,
    prompt,
    body.max_completion_tokens ?? body.max_tokens ?? null,
    [...CHAT_STOP, ...stopList(body.stop)],
    { logprobs, plainText: true },
  );
  const specs = choiceRequests(base, n, body.seed != null).map((r) => ({
    request: r,
    promptParam: 'messages',
    maxParam,
  }));
  const id = completionId('chatcmpl');
  const created = Math.floor(Date.now() / 1000);
  const fingerprint = app.generation.model?.fingerprint ?? null;
  const head = { id, created, model: MODEL_ID, system_fingerprint: fingerprint };

  if (!body.stream) {
    const results = await completeAll(request, reply, specs);
    return {
      ...head,
      object: 'chat.completion',
      choices: results.map((r, index) => ({
        index,
        message: { role: 'assistant', content: r.text.trimStart(), refusal: null },
        logprobs: logprobs === null ? null : { content: chatLogprobs(r.logprobs ?? []), refusal: null },
        finish_reason: r.finishReason,
      })),
      usage: usage(results, [0]),
    };
  }
  const withUsage = body.stream_options?.include_usage === true;
  const chunk = (index: number, delta: object, finishReason: string | null, lp: unknown = null) => ({
    ...head,
    object: 'chat.completion.chunk',
    choices: [{ index, delta, logprobs: lp, finish_reason: finishReason }],
    ...(withUsage ? { usage: null } : {}),
  });
  // Each reply starts at its first visible character, exactly as the non-streamed content does.
  const leading = specs.map(() => true);
  return streamAll(request, reply, specs, {
    first: (index) => chunk(index, { role: 'assistant', content: '' }, null),
    delta: (index, text, entries) => {
      const piece = leading[index] ? text.trimStart() : text;
      const lp =
        logprobs !== null && entries?.length ? { content: chatLogprobs(entries), refusal: null } : null;
      if (piece === '' && lp === null) return null;
      if (piece !== '') leading[index] = false;
      return chunk(index, { content: piece }, null, lp);
    },
    finish: (index, result) => chunk(index, {}, result.finishReason),
    last: (results) =>
      withUsage
        ? [{ ...head, object: 'chat.completion.chunk', choices: [], usage: usage(results, [0]) }]
        : [],
  });
}

async function textCompletion(
  app: FastifyInstance,
  request: FastifyRequest<{ Body: CompletionBody }>,
  reply: FastifyReply,
) {
  const body = request.body;
  checkModel(body.model);
  const vocabSize = app.generation.model?.config.vocabSize ?? null;
  checkLogitBias(body.logit_bias, vocabSize);
  const echo = body.echo === true;
  const logprobs = body.logprobs ?? null;
  const maxTokens = body.max_tokens ?? COMPLETIONS_MAX_TOKENS;
  if (maxTokens === 0 && !echo)
    throw badRequest(
      "Invalid field 'max_tokens': 0 generates nothing; it scores a prompt only with echo: true.",
      'max_tokens',
      'invalid_value',
    );
  const n = body.n ?? 1;
  const list = prompts(body.prompt, vocabSize);
  if (list.length * n > 64)
    throw badRequest(
      `Invalid field 'n': ${list.length} prompts × n = ${n} asks for ${list.length * n} choices; at most 64 per request.`,
      'n',
      'invalid_value',
    );
  const stop = stopList(body.stop);
  const specs = list.flatMap((p) =>
    choiceRequests(
      jobRequest(body, p.text, maxTokens, stop, { promptIds: p.ids, logprobs, echo }),
      n,
      body.seed != null,
    ).map((r) => ({ request: r, promptParam: p.param, maxParam: 'max_tokens' })),
  );
  const firstOfPrompt = list.map((_, p) => p * n);
  const head = {
    id: completionId('cmpl'),
    object: 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model: MODEL_ID,
    system_fingerprint: app.generation.model?.fingerprint ?? null,
  };

  if (!body.stream) {
    const results = await completeAll(request, reply, specs);
    return {
      ...head,
      choices: results.map((r, index) => {
        const echoed = r.echo?.text ?? '';
        let lp: LegacyLogprobs | null = null;
        if (logprobs !== null) {
          lp = legacyLogprobs(r.logprobs ?? [], echoed.length);
          if (r.echo) lp = concatLegacy(legacyLogprobs(r.echo.tokens, 0), lp);
        }
        return { text: echoed + r.text, index, logprobs: lp, finish_reason: r.finishReason };
      }),
      usage: usage(results, firstOfPrompt),
    };
  }
  const withUsage = body.stream_options?.include_usage === true;
  const chunk = (index: number, text: string, finishReason: string | null, lp: LegacyLogprobs | null) => ({
    ...head,
    choices: [{ text, index, logprobs: lp, finish_reason: finishReason }],
    ...(withUsage ? { usage: null } : {}),
  });
  // Where each choice's generated text starts in its streamed text (after an echoed prompt).
  const shift = specs.map(() => 0);
  return streamAll(request, reply, specs, {
    first: (index, echoed?: EchoedPrompt) => {
      if (!echoed) return null;
      shift[index] = echoed.text.length;
      return chunk(index, echoed.text, null, logprobs === null ? null : legacyLogprobs(echoed.tokens, 0));
    },
    delta: (index, text, entries) => {
      const lp = logprobs !== null && entries?.length ? legacyLogprobs(entries, shift[index]) : null;
      if (text === '' && lp === null) return null;
      return chunk(index, text, null, lp);
    },
    finish: (index, result) => chunk(index, '', result.finishReason, null),
    last: (results) => (withUsage ? [{ ...head, choices: [], usage: usage(results, firstOfPrompt) }] : []),
  });
}
