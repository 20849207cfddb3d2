// Data-parallel training steps on two threads: the main thread and one worker share the parameters
// (SharedArrayBuffer), each computes the gradient of its half of the batch, and the main thread combines
// the two in a fixed order, so a seed still fixes every byte of the result. Synchronous (Atomics.wait):
// the training loop stays a plain loop.
import { Worker } from 'node:worker_threads';
import type { GPTConfig } from '../engine/config.js';
import type { GPT2 } from '../engine/model.js';
import { countTargets } from '../engine/ops.js';
import type { Batch } from './batches.js';

/** What the worker needs to build its replica (everything else it reads from shared memory). */
export interface ReplicaInit {
  config: GPTConfig;
  params: SharedArrayBuffer;
  grads: SharedArrayBuffer;
  control: SharedArrayBuffer;
  results: SharedArrayBuffer;
  tokens: SharedArrayBuffer;
  /** Softmax rest column (compact model) or restricted head (full model); see GPT2. */
  restTokens: number;
  subsetIds: Int32Array | null;
  subsetRest: boolean;
}

/** Slots of the control Int32Array. */
export const CTRL = { command: 0, done: 1, state: 2, B: 3, T: 4 } as const;
/** Worker states. */
export const STATE = { starting: 0, ready: 1, failed: 2 } as const;
/** The command that stops the worker. */
export const STOP = -1;
/** Largest batch half (B·T tokens) the shared token buffer holds: inputs then targets. */
const MAX_TOKENS = 1 << 16;
/** Longest wait for the worker (start-up or one step) before giving up, in ms. */
const TIMEOUT_MS = 120_000;

const fromSource = import.meta.url.endsWith('.ts');
/** Its file: train-worker.ts beside this one, or the bundle `npm run build` writes beside the CLI's (dist/cli/). */
const workerUrl = new URL(`./train-worker${fromSource ? '.ts' : '.cjs'}`, import.meta.url);

/** Node 20 does not pass the parent's `--import tsx` hooks to worker threads: from source, register tsx first. */
function startWorker(workerData: ReplicaInit): Worker {
  if (!fromSource) return new Worker(workerUrl, { workerData });
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(workerUrl.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}

/** Copies `src` into SharedArrayBuffer-backed memory. */
export function sharedCopy(src: Float32Array): Float32Array {
  const out = new Float32Array(new SharedArrayBuffer(src.length * 4));
  out.set(src);
  return out;
}

export class DataParallel {
  private readonly worker: Worker;
  private readonly control: Int32Array;
  private readonly results: Float64Array;
  private readonly tokens: Int32Array;
  private readonly workerGrads: Float32Array;
  private seq = 0;
  private closed = false;

  /**
   * Starts the worker replica of `model`, whose parameters must live in a SharedArrayBuffer (see
   * sharedCopy); blocks until it is ready.
   */
  constructor(
    private readonly model: GPT2,
    head: { restTokens: number; subsetIds: Int32Array | null; subsetRest: boolean },
  ) {
    if (!(model.params.buffer instanceof SharedArrayBuffer))
      throw new Error('data-parallel training needs the parameters in shared memory');
    const n = model.params.length;
    const grads = new SharedArrayBuffer(n * 4);
    this.workerGrads = new Float32Array(grads);
    const control = new SharedArrayBuffer(8 * 4);
    const results = new SharedArrayBuffer(2 * 8);
    const tokens = new SharedArrayBuffer(2 * MAX_TOKENS * 4);
    this.control = new Int32Array(control);
    this.results = new Float64Array(results);
    this.tokens = new Int32Array(tokens);
    this.worker = startWorker({
      config: { ...model.config },
      params: model.params.buffer,
      grads,
      control,
      results,
      tokens,
      ...head,
    });
    this.worker.unref();
    this.await(CTRL.state, STATE.starting, 'start');
    if (Atomics.load(this.control, CTRL.state) !== STATE.ready) this.fail('start');
  }

  /**
   * Fills model.grads with the mean gradient of the whole batch (the rows split between the two
   * threads) and returns the batch's mean loss. Gradients are combined as (c₀·g₀ + c₁·g₁)/(c₀ + c₁)
   * with c the counted targets of each half.
   */
  step(batch: Batch): number {
    const { B, T } = batch;
    const B0 = Math.ceil(B / 2);
    const B1 = B - B0;
    const n0 = B0 * T;
    const n1 = B1 * T;
    if (n1 > MAX_TOKENS) throw new RangeError(`batch half of ${n1} tokens exceeds ${MAX_TOKENS}`);
    this.tokens.set(batch.inputs.subarray(n0, n0 + n1), 0);
    this.tokens.set(batch.targets.subarray(n0, n0 + n1), MAX_TOKENS);
    Atomics.store(this.control, CTRL.B, B1);
    Atomics.store(this.control, CTRL.T, T);
    this.seq++;
    Atomics.store(this.control, CTRL.command, this.seq);
    Atomics.notify(this.control, CTRL.command);

    const model = this.model;
    model.zeroGrad();
    const inputs0 = batch.inputs.subarray(0, n0);
    const targets0 = batch.targets.subarray(0, n0);
    const loss0 = model.forward(inputs0, B0, T, targets0);
    if (Number.isFinite(loss0)) model.backward();
    const c0 = countTargets(targets0, n0);

    this.await(CTRL.done, this.seq - 1, 'step');
    if (Atomics.load(this.control, CTRL.state) !== STATE.ready) this.fail('step');
    const loss1 = this.results[0];
    const c1 = this.results[1];
    const total = c0 + c1;
    if (total === 0) return 0;
    const w0 = c0 / total;
    const w1 = c1 / total;
    const g = model.grads!;
    const g1 = this.workerGrads;
    for (let i = 0; i < g.length; i++) g[i] = g[i] * w0 + g1[i] * w1;
    return loss0 * w0 + loss1 * w1;
  }

  /** Stops the worker (it exits on its own; nothing waits for it). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.control, CTRL.command, STOP);
    Atomics.notify(this.control, CTRL.command);
  }

  /** Blocks while control[slot] still equals `value`. */
  private await(slot: number, value: number, what: string): void {
    const deadline = Date.now() + TIMEOUT_MS;
    while (Atomics.load(this.control, slot) === value) {
      if (Atomics.load(this.control, CTRL.state) === STATE.failed) return;
      const left = deadline - Date.now();
      if (left <= 0) {
        this.close();
        void this.worker.terminate();
        throw new Error(`training worker did not ${what} within ${TIMEOUT_MS / 1000} s`);
      }
      Atomics.wait(this.control, slot, value, Math.min(left, 1000));
    }
  }

  private fail(what: string): never {
    const bytes = new Uint8Array(this.tokens.buffer, 0, 4096);
    const end = bytes.indexOf(0);
    const message = new TextDecoder().decode(bytes.slice(0, end < 0 ? bytes.length : end));
    this.close();
    void this.worker.terminate();
    throw new Error(`training worker failed to ${what}: ${message || 'unknown error'}`);
  }
}
