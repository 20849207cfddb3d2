// Loads the served model in a generation worker (booted ahead by the launcher, or started for it), which then serves as the pool's first worker.
import type { Worker } from 'node:worker_threads';
import type { ServedModel } from '../model.js';
import type { FromWorker, ToWorker } from './protocol.js';
import { startGenerationWorker } from './worker-file.js';

/**
 * A model loading in a generation worker (see loadServedModel; the directory goes in a 'load' message): the
 * main thread loads other code meanwhile, and no thread starts only to load. The model's weights, tables and
 * head are in shared memory, so the worker posts them without a copy. Once loaded, the worker waits for a pool
 * to take it (takeWorker). The directory may come later (a promise: a model fetched at start); the worker is
 * up meanwhile, and a rejection becomes the model's.
 */
export class ModelLoad {
  /** The model, or loadServedModel's error. */
  readonly model: Promise<ServedModel>;
  private worker: Worker | null;

  /** `worker`: a generation worker booted ahead (see bootModelWorker); by default one is started now. */
  constructor(
    dir: string | Promise<string>,
    worker: Worker = startGenerationWorker(),
    readonly quantize?: 'q8_0',
  ) {
    this.worker = worker;
    worker.ref();
    // Until a pool takes it, a failure of the thread only shows as the model's rejection.
    worker.on('error', () => {});
    worker.once('exit', () => {
      if (this.worker === worker) this.worker = null;
    });
    this.model = new Promise((resolve, reject) => {
      let settled = false;
      const onMessage = (m: FromWorker) => {
        if (m.type !== 'model') return;
        worker.off('message', onMessage);
        settled = true;
        if (m.ok) {
          // Loaded: it keeps the process alive only once a pool takes it.
          worker.unref();
          resolve(m.model);
        } else {
          this.worker = null;
          void worker.terminate();
          reject(new Error(m.message));
        }
      };
      worker.on('message', onMessage);
      worker.once('error', (err) => {
        if (!settled) reject(err);
        settled = true;
      });
      worker.once('exit', (code) => {
        if (!settled)
          reject(new Error(`the model loader thread exited (code ${code}) before loading the model`));
        settled = true;
      });
      Promise.resolve(dir).then(
        (ready) => {
          const message: ToWorker = { type: 'load', dir: ready, ...(quantize ? { quantize } : {}) };
          if (!settled) worker.postMessage(message);
        },
        (err: unknown) => {
          if (settled) return;
          settled = true;
          worker.off('message', onMessage);
          this.worker = null;
          void worker.terminate();
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
    this.model.catch(() => {});
  }

  /**
   * The worker that loaded the model, still running and not yet taken (then it keeps the process alive
   * again), or null. A pool takes it as its first worker: it needs no start-up, and computes in the head it
   * packed.
   */
  takeWorker(): Worker | null {
    const worker = this.worker;
    this.worker = null;
    worker?.ref();
    return worker;
  }

  /** Stops the loading worker if no pool took it. */
  async discard(): Promise<void> {
    const worker = this.takeWorker();
    if (worker) await worker.terminate();
  }
}

/**
 * Starts loading the model in `dir` (a directory or a .gguf file, or the directory it resolves to) in a
 * generation worker: `worker` if one was booted ahead, else a new one; `quantize` 'q8_0' quantises its float32
 * matrices at load.
 */
export function loadModelInWorker(
  dir: string | Promise<string>,
  worker?: Worker | null,
  quantize?: 'q8_0',
): ModelLoad {
  return new ModelLoad(dir, worker ?? undefined, quantize);
}
