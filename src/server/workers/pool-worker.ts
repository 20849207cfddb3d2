// One generation worker as the pool holds it: its thread, the jobs posted to it in their slots, and their cancel flags.
import type { Worker } from 'node:worker_threads';
import type { Job } from './job.js';
import type { ToWorker } from './protocol.js';

/**
 * Jobs one worker holds at once: the one it runs, and one posted behind it that it starts the moment the
 * first ends (no round trip through a busy main thread in between). Each held job has a slot: its entry in
 * the worker's cancel flags.
 */
export const JOB_SLOTS = 2;

/** Jobs a worker advances at once; the others it holds wait in its inbox, in the order they were posted. */
export const RUNNING_PER_WORKER = 1;

export class PoolWorker {
  ready = false;
  /** The worker packed its own copy of the LM head (the shared one could not be adopted). */
  ownHead = false;
  /** Set when the pool itself ends this worker (close or replacement): its exit is no crash. */
  retiring = false;
  /** Terminates the worker when a cancelled job does not stop in time. */
  watchdog: NodeJS.Timeout | null = null;
  /** Held jobs in the order they were posted (the first RUNNING_PER_WORKER run). */
  readonly held: Job[] = [];
  private readonly slotOf = new Map<Job, number>();

  constructor(
    readonly index: number,
    readonly thread: Worker,
    /** One Int32 per slot over a SharedArrayBuffer (see WorkerInit.cancel). */
    readonly cancelFlags: Int32Array,
  ) {
    if (cancelFlags.length !== JOB_SLOTS) throw new RangeError(`a worker has ${JOB_SLOTS} cancel flags`);
  }

  /** Whether the worker can take one more job. */
  get hasRoom(): boolean {
    return this.ready && this.held.length < JOB_SLOTS;
  }

  /** Whether it holds no job at all. */
  get idle(): boolean {
    return this.ready && this.held.length === 0;
  }

  /** Whether `job` is one the worker runs now (rather than one waiting in its inbox). */
  isRunning(job: Job): boolean {
    const at = this.held.indexOf(job);
    return at >= 0 && at < RUNNING_PER_WORKER;
  }

  /** Held jobs not started yet. */
  get waiting(): Job[] {
    return this.held.slice(RUNNING_PER_WORKER);
  }

  findJob(jobId: number): Job | undefined {
    return this.held.find((job) => job.id === jobId);
  }

  /** Posts `job` into a free slot (its cancel flag cleared first). */
  post(job: Job): void {
    const used = new Set(this.slotOf.values());
    let slot = 0;
    while (used.has(slot)) slot++;
    if (slot >= JOB_SLOTS) throw new Error(`worker ${this.index} has no free job slot`);
    Atomics.store(this.cancelFlags, slot, 0);
    this.slotOf.set(job, slot);
    this.held.push(job);
    const message: ToWorker = {
      type: 'job',
      jobId: job.id,
      slot,
      request: job.request,
      stream: job.streamed,
    };
    this.thread.postMessage(message);
  }

  /** Flags `job` for the worker to stop (or skip, if it has not started it). */
  flagCancel(job: Job): void {
    const slot = this.slotOf.get(job);
    if (slot !== undefined) Atomics.store(this.cancelFlags, slot, job.id);
  }

  /** The worker has reported `job`'s end: its slot is free. */
  release(job: Job): void {
    const at = this.held.indexOf(job);
    if (at >= 0) this.held.splice(at, 1);
    this.slotOf.delete(job);
  }

  /** Forgets every held job (the worker has exited) and returns them in post order. */
  releaseAll(): Job[] {
    const jobs = this.held.splice(0);
    this.slotOf.clear();
    return jobs;
  }

  clearWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = null;
  }
}
