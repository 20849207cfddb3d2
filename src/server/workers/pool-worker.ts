// One generation worker as the pool holds it: its thread, the jobs it runs together in their slots, their cancel flags and the KV-cache memory they reserve.
import type { Worker } from 'node:worker_threads';
import type { Job } from './job.js';
import type { ToWorker } from './protocol.js';

export class PoolWorker {
  ready = false;
  /** The worker packed its own copy of the LM head (the shared one could not be adopted). */
  ownHead = false;
  /** Set when the pool itself ends this worker (close or replacement): its exit is no crash. */
  retiring = false;
  /** Terminates the worker when a cancelled job does not stop in time. */
  watchdog: NodeJS.Timeout | null = null;
  /** Jobs posted to the worker and not yet reported ended, in the order they were posted (all run together). */
  readonly held: Job[] = [];
  /** Bytes of KV cache the held jobs reserve. */
  kvBytes = 0;
  private readonly slotOf = new Map<Job, number>();

  constructor(
    readonly index: number,
    readonly thread: Worker,
    /** One Int32 per slot over a SharedArrayBuffer (see WorkerInit.cancel): the jobs it runs at once. */
    readonly cancelFlags: Int32Array,
  ) {}

  /** Jobs the worker runs at once (its batch). */
  get slots(): number {
    return this.cancelFlags.length;
  }

  /** Whether the worker can take one more job. */
  get hasRoom(): boolean {
    return this.ready && this.held.length < this.slots;
  }

  findJob(jobId: number): Job | undefined {
    return this.held.find((job) => job.id === jobId);
  }

  /** Posts `job` into a free slot (its cancel flag cleared first); it joins the worker's batch at its next step. */
  post(job: Job): void {
    const used = new Set(this.slotOf.values());
    let slot = 0;
    while (used.has(slot)) slot++;
    if (slot >= this.slots) throw new Error(`worker ${this.index} has no free job slot`);
    Atomics.store(this.cancelFlags, slot, 0);
    this.slotOf.set(job, slot);
    this.held.push(job);
    this.kvBytes += job.kvBytes;
    const message: ToWorker = {
      type: 'job',
      jobId: job.id,
      slot,
      request: job.request,
      stream: job.streamed,
    };
    this.thread.postMessage(message);
  }

  /** Flags `job` for the worker to stop at its next step. */
  flagCancel(job: Job): void {
    const slot = this.slotOf.get(job);
    if (slot !== undefined) Atomics.store(this.cancelFlags, slot, job.id);
  }

  /** The worker has reported `job`'s end: its slot and its KV-cache reservation are free. */
  release(job: Job): void {
    const at = this.held.indexOf(job);
    if (at < 0) return;
    this.held.splice(at, 1);
    this.slotOf.delete(job);
    this.kvBytes -= job.kvBytes;
  }

  /** Forgets every held job (the worker has exited) and returns them in post order. */
  releaseAll(): Job[] {
    const jobs = this.held.splice(0);
    this.slotOf.clear();
    this.kvBytes = 0;
    return jobs;
  }

  clearWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = null;
  }
}
