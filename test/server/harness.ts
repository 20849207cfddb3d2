// Shared set-up for the server tests: a tiny model, an app built on it, SSE parsing and metric reading.
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

export async function scrape(app: FastifyInstance): Promise<string> {
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  return res.body;
}
