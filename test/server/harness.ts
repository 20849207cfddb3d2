// Shared set-up for the server tests: a tiny model, an app built on it, requests to a listening server, SSE parsing and metric reading.
import type { FastifyInstance } from 'fastify';
import { type AppOptions, buildApp } from '../../src/server/app.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

export const SYSTEM_PROMPT = 'You are a test assistant.';

export interface TestApp {
  app: FastifyInstance;
  model: TinyModel;
  close(): Promise<void>;
}

/** Builds an app on a fresh tiny model (2 workers, no rate limit, no logs) and waits until it is ready. */
export async function startTestApp(
  options: Partial<AppOptions> = {},
  modelOptions: Parameters<typeof createTinyModel>[0] = {},
): Promise<TestApp> {
  const model = await createTinyModel(modelOptions);
  const app = await buildApp({
    modelDir: model.dir,
    systemPrompt: SYSTEM_PROMPT,
    workers: 2,
    logger: false,
    rateLimit: false,
    processMetrics: false,
    ...options,
  });
  // Tests get the whole pool (the app is ready once the first worker is).
  await app.generation.allWorkersReady();
  return {
    app,
    model,
    async close() {
      await app.close();
      model.remove();
    },
  };
}

/** Parsed JSON whose fields the tests read freely (assertions check every value they use). */
// biome-ignore lint/suspicious/noExplicitAny: test-side JSON, checked by the assertions that read it
export type Json = Record<string, any>;

export interface SseStream {
  /** Parsed JSON of every `data:` event except [DONE]. */
  events: Json[];
  /** Whether the stream ended with `data: [DONE]`. */
  done: boolean;
}

/** Splits an SSE body into events, checking the framing: every event is one `data: ...` line and a blank line. */
export function parseSse(body: string): SseStream {
  if (!body.endsWith('\n\n'))
    throw new Error(`SSE body does not end with a blank line: ${JSON.stringify(body.slice(-40))}`);
  const blocks = body.slice(0, -2).split('\n\n');
  const events: Json[] = [];
  let done = false;
  for (const block of blocks) {
    if (!block.startsWith('data: ') || block.includes('\n'))
      throw new Error(`malformed SSE event: ${JSON.stringify(block.slice(0, 80))}`);
    const data = block.slice(6);
    if (done) throw new Error('an event follows [DONE]');
    if (data === '[DONE]') done = true;
    else events.push(JSON.parse(data));
  }
  return { events, done };
}

/** The value of one sample in Prometheus text format (labels as written, e.g. `{route="/generate"}`), or 0. */
export function metricValue(text: string, name: string, labels = ''): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const key = line.slice(0, space);
    if (key === `${name}${labels}`) return Number(line.slice(space + 1));
  }
  return 0;
}

/** The /metrics text of an app (through inject) or of a listening server at a base URL. */
export async function scrape(target: FastifyInstance | string): Promise<string> {
  if (typeof target === 'string') return (await fetch(`${target}/metrics`)).text();
  const res = await target.inject({ method: 'GET', url: '/metrics' });
  return res.body;
}

/** A request as app.inject takes it: an object payload is sent as JSON, a string as it is. */
export interface RequestSpec {
  method?: string;
  url: string;
  payload?: unknown;
  headers?: Record<string, string>;
}

/** A reply as app.inject gives it. */
export interface Reply {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  json(): Json;
}

/** Sends one request to the server listening at `base` (e.g. http://127.0.0.1:PORT) and reads the whole reply. */
export async function request(base: string, spec: RequestSpec | string): Promise<Reply> {
  const { method = 'GET', url, payload, headers = {} } = typeof spec === 'string' ? { url: spec } : spec;
  const json = payload !== undefined && typeof payload !== 'string';
  const res = await fetch(`${base}${url}`, {
    method,
    headers: json ? { 'content-type': 'application/json', ...headers } : headers,
    body: payload === undefined ? undefined : json ? JSON.stringify(payload) : (payload as string),
  });
  const body = await res.text();
  const replyHeaders: Record<string, string> = {};
  res.headers.forEach((value, name) => {
    replyHeaders[name] = value;
  });
  return {
    statusCode: res.status,
    headers: replyHeaders,
    body,
    json: () => JSON.parse(body),
  };
}
