// Talks to POST /v1/chat/completions with stream: true and turns every HTTP or network outcome into plain words.
import { SseParser } from './sse.js';

export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatRequest {
  messages: ChatTurn[];
  max_tokens: number;
  temperature: number;
  top_k: number;
  top_p: number;
  seed?: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export type StreamOutcome =
  | { kind: 'done'; finishReason: string | null; usage: Usage | null }
  | { kind: 'stopped' }
  | { kind: 'error'; message: string };

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export const CHAT_URL = '/v1/chat/completions';

/** Reads a Retry-After header (seconds or an HTTP date) as whole seconds from now, or null. */
export function retryAfterSeconds(header: string | null, now = Date.now()): number | null {
  if (header === null || header.trim() === '') return null;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(0, Math.ceil((when - now) / 1000));
}

/** The `error.message` of an OpenAI-shaped error body, or null when the body is not one. */
export function errorMessageOf(body: string): string | null {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed !== 'object' || parsed === null) return null;
    const error = (parsed as { error?: unknown }).error;
    if (typeof error === 'string') return error;
    if (typeof error === 'object' && error !== null) {
      const message = (error as { message?: unknown }).message;
      if (typeof message === 'string' && message.trim() !== '') return message;
    }
    const message = (parsed as { message?: unknown }).message;
    return typeof message === 'string' && message.trim() !== '' ? message : null;
  } catch {
    return null;
  }
}

function waitPhrase(seconds: number | null): string {
  if (seconds === null) return 'in a moment';
  if (seconds <= 1) return 'in 1 second';
  return `in ${seconds} seconds`;
}

/** The sentence shown to the user for a non-2xx answer; `sentKey`: the request carried an API key. */
export function describeHttpError(
  status: number,
  retryAfter: string | null,
  body: string,
  sentKey = false,
): string {
  const serverMessage = errorMessageOf(body);
  const wait = waitPhrase(retryAfterSeconds(retryAfter));
  if (status === 503) return `The server is busy right now. Please try again ${wait}.`;
  if (status === 429) return `You are sending messages too quickly. Please wait and try again ${wait}.`;
  if (status === 413) return 'That message is too long for the server. Please shorten it.';
  if (status === 401) {
    return sentKey
      ? 'The server did not accept that API key. Check it under Settings → API key.'
      : 'This server needs an API key. Enter it under Settings → API key.';
  }
  if (status === 400 || status === 422) {
    return serverMessage
      ? `The server could not use that request: ${serverMessage}`
      : 'The server rejected that request.';
  }
  const detail = serverMessage ? `: ${serverMessage}` : '.';
  return `The server answered with an error (HTTP ${status})${detail}`;
}

export const NETWORK_ERROR = 'Could not reach the server. Check your connection and try again.';
export const CONNECTION_LOST = 'The connection was lost before the reply finished.';

interface ChunkShape {
  error?: unknown;
  choices?: { delta?: { content?: unknown }; finish_reason?: unknown }[];
  usage?: Usage | null;
}

/** The Authorization header for a key the user entered (none when the field is empty). */
export function authHeaders(apiKey: string): Record<string, string> {
  const key = apiKey.trim();
  return key === '' ? {} : { authorization: `Bearer ${key}` };
}

/**
 * Sends one streamed chat request. `onDelta` receives each piece of reply text as it arrives. Resolves (never
 * rejects) with how the stream ended: finished, stopped through `signal`, or an error sentence. `apiKey` is
 * sent as a bearer token when the server requires one.
 */
export async function streamChat(
  request: ChatRequest,
  signal: AbortSignal,
  onDelta: (text: string) => void,
  fetchImpl: FetchLike = (url, init) => fetch(url, init),
  apiKey = '',
): Promise<StreamOutcome> {
  let response: Response;
  try {
    response = await fetchImpl(CHAT_URL, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...authHeaders(apiKey) },
      body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }),
      signal,
    });
  } catch {
    return signal.aborted ? { kind: 'stopped' } : { kind: 'error', message: NETWORK_ERROR };
  }
  if (!response.ok) {
    let body = '';
    try {
      body = await response.text();
    } catch {
      if (signal.aborted) return { kind: 'stopped' };
    }
    return {
      kind: 'error',
      message: describeHttpError(
        response.status,
        response.headers.get('retry-after'),
        body,
        apiKey.trim() !== '',
      ),
    };
  }
  if (response.body === null) return { kind: 'error', message: CONNECTION_LOST };

  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  let finishReason: string | null = null;
  let usage: Usage | null = null;
  const handle = (data: string): StreamOutcome | null => {
    if (data === '[DONE]') return { kind: 'done', finishReason, usage };
    let chunk: ChunkShape;
    try {
      chunk = JSON.parse(data) as ChunkShape;
    } catch {
      return { kind: 'error', message: 'The server sent a reply this page could not read.' };
    }
    if (chunk.error !== undefined) {
      return { kind: 'error', message: errorMessageOf(data) ?? 'The server reported an error mid-reply.' };
    }
    const choice = chunk.choices?.[0];
    const content = choice?.delta?.content;
    if (typeof content === 'string' && content !== '') onDelta(content);
    if (typeof choice?.finish_reason === 'string') finishReason = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
    return null;
  };

  try {
    for (;;) {
      const { done, value } = await reader.read();
      const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
      const events = parser.push(text);
      if (done) events.push(...parser.end());
      for (const data of events) {
        // Stop pressed while this chunk was being shown: nothing after it may appear.
        if (signal.aborted) return { kind: 'stopped' };
        const outcome = handle(data);
        if (outcome !== null) {
          await reader.cancel().catch(() => undefined);
          return outcome;
        }
      }
      if (done) break;
    }
  } catch {
    return signal.aborted ? { kind: 'stopped' } : { kind: 'error', message: CONNECTION_LOST };
  }
  // The stream closed without [DONE]: complete if the final chunk came, otherwise it was cut off.
  return finishReason !== null
    ? { kind: 'done', finishReason, usage }
    : { kind: 'error', message: CONNECTION_LOST };
}
