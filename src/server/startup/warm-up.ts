// The build's warm-up of the CLI bundle: a server start-up without a model, then the probes and APIs answered through app.inject, so the code cache saved after it holds that code compiled.
import type { FastifyInstance } from 'fastify';
import { createLogger } from '../logging.js';
import { startServer } from '../server.js';
import { precompiledValidators } from './precompiled-validators.js';

const json = { 'content-type': 'application/json' };

/** What a start's first requests run: routing, hooks, validation, errors and serialisation of each kind. */
const REQUESTS = [
  { method: 'GET', url: '/health' },
  { method: 'GET', url: '/ready' },
  { method: 'GET', url: '/metrics' },
  { method: 'GET', url: '/v1/models' },
  { method: 'POST', url: '/generate', headers: json, payload: '{"prompt":"hi","max_new_tokens":4}' },
  { method: 'POST', url: '/generate', headers: json, payload: '{"prompt":' },
  {
    method: 'POST',
    url: '/v1/chat/completions',
    headers: json,
    payload: '{"messages":[{"role":"user","content":"hi"}],"stream":true}',
  },
] as const;

/**
 * Builds and readies the app as `serve` does (no model loads: the generation routes answer 503), answers
 * each request twice, then closes; resolves with "METHOD URL status" for each.
 */
export async function warmUp(): Promise<string[]> {
  const answered: string[] = [];
  const noModel = Promise.reject(new Error('warm-up without a model'));
  noModel.catch(() => {});
  const afterReady = async (app: FastifyInstance) => {
    for (const request of REQUESTS) {
      let status = 0;
      for (let i = 0; i < 2; i++) status = (await app.inject(request)).statusCode;
      answered.push(`${request.method} ${request.url} ${status}`);
    }
  };
  await startServer({
    port: 0,
    host: '127.0.0.1',
    model: noModel,
    listenAfter: noModel,
    systemPrompt: 'warm-up',
    workers: 1,
    logger: createLogger({ level: 'silent' }),
    handleSignals: false,
    validators: precompiledValidators ? { use: precompiledValidators } : undefined,
    afterReady,
  }).then(
    () => {
      throw new Error('the warm-up server started without a model');
    },
    (err: Error) => {
      if (err.message !== 'warm-up without a model') throw err;
    },
  );
  return answered;
}
