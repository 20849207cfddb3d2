// Runs the bundled HTTP stack's start-up (the app built and its schemas compiled; no model, no port): `validators` records the request validators ajv generates into dist/server/validators.cjs, `cache` starts on them and saves V8's code caches, so `serve` neither generates nor compiles that code.
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../dist/io/atomic.js';
import {
  codeCache,
  createLogger,
  saveCodeCache,
  startServer,
  validators,
  validatorsModule,
} from '../dist/server/http-stack.js';

const mode = process.argv[2];
if (mode !== 'validators' && mode !== 'cache') throw new Error('usage: warm-http-stack.mjs validators|cache');

/** Builds the app and makes it ready, then closes it (its model never loads). */
async function startUp(options) {
  const noModel = Promise.reject(new Error('warm-up without a model'));
  noModel.catch(() => {});
  await startServer({
    port: 0,
    host: '127.0.0.1',
    model: noModel,
    listenAfter: noModel,
    systemPrompt: 'warm-up',
    workers: 1,
    logger: createLogger({ level: 'silent' }),
    handleSignals: false,
    ...options,
  }).then(
    () => {
      throw new Error('the warm-up server started without a model');
    },
    (err) => {
      if (err.message !== 'warm-up without a model') throw err;
    },
  );
}

if (mode === 'validators') {
  const recorded = new Map();
  await startUp({ validators: { record: (key, code) => recorded.set(key, code) } });
  await writeFileAtomic(
    fileURLToPath(new URL('../dist/server/validators.cjs', import.meta.url)),
    validatorsModule(recorded),
  );
  console.log(`${recorded.size} validators`);
} else {
  if (!validators) throw new Error('dist/server/validators.cjs is missing or does not load');
  // The probes and the APIs' request handling (routing, hooks, validation, errors, serialisation) run twice
  // each, so the cache holds them compiled and a start's first requests do not compile them: the model never
  // loads here, so the generation routes answer 503.
  const answered = [];
  const afterReady = async (app) => {
    const json = { 'content-type': 'application/json' };
    for (const request of [
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
    ]) {
      let status = 0;
      for (let i = 0; i < 2; i++) status = (await app.inject(request)).statusCode;
      answered.push(`${request.method} ${request.url} ${status}`);
    }
  };
  await startUp({ validators: { use: validators.exports }, afterReady });
  const cache = codeCache === 'used' ? 'current' : await saveCodeCache();
  console.log(`${cache} (warmed by ${answered.join(', ')})`);
}
