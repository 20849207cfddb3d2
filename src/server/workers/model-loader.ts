// A short-lived thread that loads the served model (tokenizer scan, weights) while the main thread loads the HTTP stack.
import { parentPort, workerData } from 'node:worker_threads';
import { loadServedModel } from '../model.js';

const port = parentPort;
if (!port) throw new Error('model-loader.ts runs only as a worker thread');

// The tables and weights are in SharedArrayBuffers: posting them shares the memory with the main thread.
loadServedModel(workerData as string).then(
  (model) => port.postMessage({ ok: true, model }),
  (err: unknown) =>
    port.postMessage({ ok: false, message: err instanceof Error ? err.message : String(err) }),
);
