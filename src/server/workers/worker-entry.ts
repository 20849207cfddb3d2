// Where a compiled generation worker thread starts: runs the worker's bundle through V8's code cache, and saves that cache when the pool asks.
import { parentPort } from 'node:worker_threads';
import { runCachedCommonJs } from '../code-cache.js';
import type { FromWorker, ToWorker } from './protocol.js';

// `npm run build` bundles this file into generation-worker-entry.cjs next to generation-worker.cjs (the worker
// and everything it imports): a worker then parses and compiles only what the cache does not hold.
const bundle = runCachedCommonJs(new URL('./generation-worker.cjs', import.meta.url));

parentPort?.on('message', (message: ToWorker) => {
  if (message.type !== 'save-code-cache') return;
  void bundle.save(message.force === true).then((saved) => {
    const reply: FromWorker = { type: 'code-cache', cache: bundle.cache, saved };
    parentPort?.postMessage(reply);
  });
});
