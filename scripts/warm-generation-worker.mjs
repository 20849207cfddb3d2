// Writes V8's code cache of the generation worker (dist/server/workers/generation-worker.cjs.cache) from a worker that loaded a model and generated with it: the image's build runs it on the served model with the image's Node.
import { ORIGINAL_SAMPLING } from '../dist/generate/original-sampling.js';
import { loadServedModelInThread, WorkerPool, workersUseCodeCache } from '../dist/server/workers/pool.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: warm-generation-worker.mjs MODEL_DIR');
if (!workersUseCodeCache)
  throw new Error('dist/server/workers/generation-worker-entry.cjs is missing or stale: run `npm run build`');

// The worker that loads the model is the pool's first: the cache then holds the load as well as generation.
const model = await loadServedModelInThread(dir);
const { config, params, tokenizer, head, id } = model;
const pool = new WorkerPool(
  { config, params, tokenizer, head, modelId: id },
  { size: 1, queueLimit: 4, saveCodeCacheAfterFirstJob: false },
);
try {
  await pool.start();
  const request = { prompt: 'What is tiny-llm?', maxNewTokens: 16, ...ORIGINAL_SAMPLING, seed: 1, stop: [] };
  // Unstreamed, streamed (as the chat API runs) and greedy: the paths a start's first requests take.
  await pool.submit(request).result;
  await pool.submit(request, { onToken: () => {} }).result;
  await pool.submit({ ...request, temperature: 0, topK: 0, topP: 1 }).result;
  // Written even over a current cache: whatever wrote that may have run less of the worker's code.
  console.log(`generation worker code cache: ${await pool.saveWorkerCodeCache({ force: true })}`);
} finally {
  await pool.close();
}
