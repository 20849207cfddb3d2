// Worker threads that share the engine's WebAssembly memory and run pieces of its large kernel calls.
import { Worker } from 'node:worker_threads';
import { wasmArena } from '../engine/wasm/runtime.js';
import {
  HELPER_KERNELS,
  HELPER_MAX_ARGS,
  type HelperKernel,
  type KernelHelper,
  setKernelHelpers,
} from '../engine/wasm/threads.js';

/**
 * Control block per helper (Int32Array over a SharedArrayBuffer): [0] job number (-1: stop), [1] job number
 * finished, [2] 1 when the last job failed, [3] kernel index, [4] argument count; the arguments follow as
 * f64 from byte 64 (integers, floats and 0/1 flags all survive the trip exactly).
 */
const JOB = 0;
const DONE = 1;
const FAILED = 2;
const KERNEL = 3;
const COUNT = 4;
const ARGS_BYTE = 64;
/** Checks of a flag before sleeping on it (tens of microseconds): a wake-up from sleep costs more than that. */
const SPINS = 20000;

/** The helper's code: instantiate the kernels over the shared memory, then run one kernel call per job number. */
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const { module, memory, control, names } = workerData;
const ctl = new Int32Array(control);
const args = new Float64Array(control, ${ARGS_BYTE});
const exports = new WebAssembly.Instance(module, { env: { memory } }).exports;
const kernels = names.map((n) => exports[n]);
parentPort.postMessage('ready');
let seen = 0;
for (;;) {
  // A decode step hands out dozens of short jobs: look for the next one a little while before sleeping.
  for (let spin = 0; spin < ${SPINS} && Atomics.load(ctl, 0) === seen; spin++);
  Atomics.wait(ctl, 0, seen);
  const job = Atomics.load(ctl, 0);
  if (job < 0) break;
  if (job === seen) continue;
  seen = job;
  let failed = 0;
  try {
    const a = args.subarray(0, ctl[${COUNT}]);
    kernels[ctl[${KERNEL}]](...a);
  } catch {
    failed = 1;
  }
  Atomics.store(ctl, 2, failed);
  Atomics.store(ctl, 1, job);
  Atomics.notify(ctl, 1);
}
`;

class ThreadHelper implements KernelHelper {
  private readonly shared = new SharedArrayBuffer(ARGS_BYTE + HELPER_MAX_ARGS * 8);
  private readonly ctl = new Int32Array(this.shared, 0, ARGS_BYTE / 4);
  private readonly args = new Float64Array(this.shared, ARGS_BYTE, HELPER_MAX_ARGS);
  private job = 0;
  readonly worker: Worker;

  constructor(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    readonly work: number,
  ) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module, memory, control: this.shared, names: [...HELPER_KERNELS] },
    });
    this.worker.unref();
  }

  /** Resolves once the helper has its kernels instantiated and waits for jobs. */
  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.worker.once('message', () => resolve());
      this.worker.once('error', reject);
      this.worker.once('exit', (code) =>
        reject(new Error(`kernel thread exited (code ${code}) before it was ready`)),
      );
    });
  }

  start(kernel: HelperKernel, args: ArrayLike<number>, count = args.length): void {
    if (count > HELPER_MAX_ARGS) throw new RangeError(`${kernel}: ${count} arguments`);
    for (let i = 0; i < count; i++) this.args[i] = args[i];
    this.ctl[KERNEL] = HELPER_KERNELS.indexOf(kernel);
    this.ctl[COUNT] = count;
    this.job++;
    Atomics.store(this.ctl, JOB, this.job);
    Atomics.notify(this.ctl, JOB);
  }

  wait(): void {
    for (let spin = 0; spin < SPINS && Atomics.load(this.ctl, DONE) !== this.job; spin++);
    for (;;) {
      const done = Atomics.load(this.ctl, DONE);
      if (done === this.job) break;
      Atomics.wait(this.ctl, DONE, done);
    }
    if (Atomics.load(this.ctl, FAILED) !== 0) throw new Error('a kernel failed on a helper thread');
  }

  async stop(): Promise<void> {
    Atomics.store(this.ctl, JOB, -1);
    Atomics.notify(this.ctl, JOB);
    await this.worker.terminate();
  }
}

let running: ThreadHelper[] = [];

/**
 * Makes the engine's large kernel calls (gemm, and the decode products) use `threads` threads in all (this one
 * plus threads - 1 workers over the same WebAssembly memory); 1 turns it off. Returns the thread count now in
 * use (1 where WebAssembly kernels are unavailable). Workers do not keep the process alive; stopGemmThreads
 * ends them.
 */
export async function enableGemmThreads(threads: number): Promise<number> {
  if (!Number.isInteger(threads) || threads < 1 || threads > 64)
    throw new RangeError(`gemm threads must be an integer from 1 to 64, got ${threads}`);
  await stopGemmThreads();
  const arena = wasmArena();
  if (!arena || threads === 1) return 1;
  const bytes = arena.kernels.gemmWorkBytes() + 128;
  const started: ThreadHelper[] = [];
  try {
    for (let i = 1; i < threads; i++)
      started.push(new ThreadHelper(arena.module, arena.memory, arena.alloc(bytes)));
    await Promise.all(started.map((h) => h.ready()));
  } catch (e) {
    await Promise.all(started.map((h) => h.stop()));
    throw e;
  }
  running = started;
  setKernelHelpers(running, arena.memory);
  return threads;
}

/** Back to one thread; the workers are ended. */
export async function stopGemmThreads(): Promise<void> {
  const old = running;
  running = [];
  setKernelHelpers([], null);
  await Promise.all(old.map((h) => h.stop()));
}
