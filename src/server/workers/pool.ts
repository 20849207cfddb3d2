// The scheduler of the generation workers: a bounded FIFO queue of jobs over a fixed set of workers that each run a batch of them, within a KV-cache memory budget, with cancellation and crash recovery.
import type { Worker } from 'node:worker_threads';
import { ApiError, unavailable } from '../errors.js';
import { ContextOverflow, Job, type JobHandlers, type JobResult } from './job.js';
import { defaultBatch, defaultKvBudget, kvBytesPerPosition, requestKvBytes } from './kv-budget.js';
import { PoolWorker } from './pool-worker.js';
import type { FromWorker, JobRequest, ToWorker, WorkerInit } from './protocol.js';
import { Waiters } from './waiters.js';
import { startGenerationWorker } from './worker-file.js';

export interface PoolOptions {
  size: number;
  /** Jobs that may wait for a worker; one more is refused with 503. */
  queueLimit: number;
  /** Generations each worker advances together, one pass over the weights per step (default: defaultBatch of the model). */
  batch?: number;
  /**
   * Bytes the KV caches of running generations may take in all (default defaultKvBudget); a job that would
   * go beyond waits in the queue. At least one full-context sequence always fits.
   */
  kvBudgetBytes?: number;
  /** After a cancel, how long a worker may take to notice before it is terminated and replaced. */
  cancelGraceMs?: number;
  observer?: PoolObserver;
  /** Called when a dead worker cannot be replaced: the service is no longer healthy. */
  onBroken?(err: Error): void;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  /**
   * A worker thread already running the generation code, typically the one that loaded the model
   * (ModelLoad.takeWorker): it becomes worker 0, ready as soon as it has the model's views.
   */
  firstWorker?: Worker | null;
}

/** Hooks for metrics; all optional. Times are in seconds. */
export interface PoolObserver {
  firstToken?(secondsSinceSubmit: number): void;
  finished?(completionTokens: number, generationSeconds: number): void;
  aborted?(): void;
  workerReplaced?(): void;
}

export class WorkerPool {
  private readonly workers: PoolWorker[] = [];
  private readonly queue: Job[] = [];
  private readonly running = new Map<number, Job>();
  private nextJobId = 1;
  private closing = false;
  private readonly idleWaiters = new Waiters(() => this.queueDepth === 0 && this.running.size === 0);
  private readonly readyWaiters = new Waiters(() => this.closing || this.readyWorkers === this.options.size);
  private readonly cancelGraceMs: number;
  /** Generations a worker runs together. */
  readonly batch: number;
  /** The KV-cache budget in bytes (see PoolOptions.kvBudgetBytes). */
  readonly kvBudgetBytes: number;
  /** Workers replaced after dying; for tests and logs. */
  replacements = 0;
  /** Token messages received from workers (a non-streamed job sends none, a streamed one a few). */
  tokenMessages = 0;

  constructor(
    private readonly init: Omit<WorkerInit, 'cancel' | 'batch'>,
    private readonly options: PoolOptions,
  ) {
    if (!Number.isInteger(options.size) || options.size < 1) throw new RangeError('pool size must be >= 1');
    if (!Number.isInteger(options.queueLimit) || options.queueLimit < 0)
      throw new RangeError('queue limit must be >= 0');
    this.cancelGraceMs = options.cancelGraceMs ?? 2000;
    this.batch = options.batch ?? defaultBatch(init.config);
    if (!Number.isInteger(this.batch) || this.batch < 1) throw new RangeError('batch must be >= 1');
    const c = init.config;
    const fullContext = c.nPositions * kvBytesPerPosition(c);
    this.kvBudgetBytes = Math.max(
      fullContext,
      options.kvBudgetBytes ?? defaultKvBudget(c, options.size, this.batch),
    );
  }

  /**
   * Starts every worker and resolves once one of them can generate (options.firstWorker, when given, first);
   * the others join as they come up (allReady). Rejects, with the first worker's reason, only when none
   * starts. A worker that fails to start while another serves is replaced (with retries, as a crashed one is).
   */
  async start(): Promise<void> {
    const first = this.options.firstWorker;
    const started = Array.from({ length: this.options.size }, (_, i) =>
      i === 0 && first ? this.spawn(0, first) : this.spawn(i),
    );
    const any = Promise.any(started);
    started.forEach((spawned, index) => {
      spawned.catch((err: Error) =>
        any.then(
          () => {
            if (this.closing) return;
            this.log('error', `${err.message}; starting a replacement`);
            this.replacements++;
            this.options.observer?.workerReplaced?.();
            void this.replace(index, 1);
          },
          () => {},
        ),
      );
    });
    try {
      await any;
    } catch (err) {
      throw err instanceof AggregateError ? (err.errors[0] as Error) : err;
    }
  }

  /** Resolves once every worker is ready (start resolves at the first), or when the pool closes. */
  allReady(): Promise<void> {
    return this.readyWaiters.wait();
  }

  /** Resolves when no job is queued or running. */
  idle(): Promise<void> {
    return this.idleWaiters.wait();
  }

  get size(): number {
    return this.workers.length;
  }

  /** Jobs waiting in the queue for a worker's batch to have room (or for KV-cache memory). */
  get queueDepth(): number {
    return this.queue.length;
  }

  /** Bytes of KV cache the running generations reserve now. */
  get kvReservedBytes(): number {
    let bytes = 0;
    for (const w of this.workers) bytes += w?.kvBytes ?? 0;
    return bytes;
  }

  get inFlight(): number {
    return this.running.size;
  }

  /** Workers that have built the model and can take a job. */
  get readyWorkers(): number {
    return this.workers.filter((w) => w.ready).length;
  }

  /** Ready workers that compute in their own copy of the LM head instead of the shared one (0 when all share it). */
  get workersWithOwnHead(): number {
    return this.workers.filter((w) => w.ready && w.ownHead).length;
  }

  get busyWorkers(): number {
    return this.workers.filter((w) => w.held.length > 0).length;
  }

  /** Index of a worker running a job, or -1. */
  busyWorkerIndex(): number {
    return this.workers.findIndex((w) => w.held.length > 0);
  }

  /** Queues a job; throws a 503 ApiError when the queue is full or the pool is closing. */
  submit(request: JobRequest, handlers: JobHandlers = {}): Job {
    if (this.closing)
      throw unavailable('The server is shutting down; retry on another instance.', 'shutting_down');
    const kvBytes = requestKvBytes(request, this.init.config);
    const free =
      this.queue.length === 0 &&
      this.kvReservedBytes + kvBytes <= this.kvBudgetBytes &&
      this.workers.some((w) => w?.hasRoom);
    if (!free && this.queueDepth >= this.options.queueLimit) {
      throw unavailable(
        `The server is busy (${this.queueDepth} requests waiting); retry shortly.`,
        'queue_full',
        2,
      );
    }
    const job = new Job(this.nextJobId, request, handlers, (j) => this.cancel(j), kvBytes);
    this.nextJobId = this.nextJobId >= 0x7fffffff ? 1 : this.nextJobId + 1;
    this.queue.push(job);
    this.dispatch();
    return job;
  }

  /**
   * Cancels a job: one in the queue is answered at once; a running one stops at its worker's next step, and
   * the worker is replaced if it does not within cancelGraceMs.
   */
  cancel(job: Job): void {
    if (job.state === 'ended' || job.cancelRequested) return;
    job.cancelRequested = true;
    this.options.observer?.aborted?.();
    const holder = this.workers.find((w) => w?.held.includes(job));
    if (!holder) {
      const at = this.queue.indexOf(job);
      if (at >= 0) this.queue.splice(at, 1);
      this.finish(job, job.cancelledResult());
      return;
    }
    holder.flagCancel(job);
    if (!holder.watchdog) {
      // A worker stuck in one long step cannot see the flag; replace it rather than wait forever.
      holder.watchdog = setTimeout(() => {
        if (holder.held.some((j) => j.state === 'running' && j.cancelRequested)) {
          this.log(
            'warn',
            `worker ${holder.index} ignored a cancel for ${this.cancelGraceMs} ms; replacing it`,
          );
          void holder.thread.terminate();
        }
      }, this.cancelGraceMs);
      holder.watchdog.unref();
    }
  }

  /** Cancels every queued and running job (used when a drain runs out of time). */
  cancelAll(): void {
    for (const job of [...this.queue, ...this.workers.flatMap((w) => w.held)]) job.cancel();
  }

  /**
   * Terminates one worker as if it had crashed: its running job fails with a 503, the ones posted to it go
   * back to the queue, and a fresh worker takes its place. Used by tests to prove recovery.
   */
  async terminateWorker(index: number): Promise<void> {
    const w = this.workers[index];
    if (!w) throw new RangeError(`no worker ${index}`);
    await w.thread.terminate();
  }

  /** Stops all workers; queued and running jobs fail with a 503. */
  async close(): Promise<void> {
    this.closing = true;
    this.readyWaiters.check();
    const err = unavailable('The server is shutting down; retry on another instance.', 'shutting_down');
    for (const job of this.queue.splice(0)) this.fail(job, err);
    await Promise.all(
      this.workers.map((w) => {
        w.retiring = true;
        for (const job of w.held) this.fail(job, err);
        return w.thread.terminate();
      }),
    );
  }

  private log(level: 'info' | 'warn' | 'error', message: string): void {
    this.options.log?.(level, message);
  }

  /** Takes `thread` (or starts one) as worker `index`; resolves once it has built the model. */
  private spawn(index: number, thread: Worker = startGenerationWorker()): Promise<void> {
    const cancelFlags = new Int32Array(new SharedArrayBuffer(this.batch * Int32Array.BYTES_PER_ELEMENT));
    const init: ToWorker = { type: 'init', init: { ...this.init, cancel: cancelFlags, batch: this.batch } };
    thread.postMessage(init);
    const w = new PoolWorker(index, thread, cancelFlags);
    this.workers[index] = w;
    return new Promise<void>((resolve, reject) => {
      let lastError: Error | null = null;
      thread.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          w.ready = true;
          w.ownHead = message.ownHead;
          if (message.ownHead)
            this.log('warn', `generation worker ${index} packed its own copy of the LM head (more memory)`);
          resolve();
          this.dispatch();
          this.readyWaiters.check();
          return;
        }
        this.onMessage(w, message);
      });
      thread.on('error', (err) => {
        lastError = err;
        this.log('error', `generation worker ${index} failed: ${err.message}`);
      });
      thread.on('exit', (code) => {
        if (!w.ready) {
          const why = lastError ? `: ${lastError.message}` : '';
          reject(new Error(`generation worker ${index} exited (code ${code}) before it was ready${why}`));
        }
        this.onExit(w, code);
      });
    });
  }

  /** A worker ended: its running jobs end (a 503 unless cancelled), and it is replaced. */
  private onExit(w: PoolWorker, code: number): void {
    w.clearWatchdog();
    for (const job of w.releaseAll()) {
      if (job.cancelRequested) this.finish(job, job.cancelledResult());
      else
        this.fail(
          job,
          unavailable('The generation worker stopped unexpectedly; retry the request.', 'worker_crashed'),
        );
    }
    // Its KV-cache reservations are free: queued jobs may fit another worker now.
    queueMicrotask(() => this.dispatch());
    const wasReady = w.ready;
    w.ready = false;
    if (this.closing || w.retiring || !wasReady) return;
    this.log('warn', `generation worker ${w.index} exited (code ${code}); starting a replacement`);
    this.replacements++;
    this.options.observer?.workerReplaced?.();
    void this.replace(w.index, 1);
  }

  /** Starts a replacement worker, retrying a few times; if none will start, the pool reports itself broken. */
  private async replace(index: number, attempt: number): Promise<void> {
    try {
      await this.spawn(index);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.log('error', `replacement worker ${index} could not start (attempt ${attempt}): ${message}`);
      if (this.closing) return;
      if (attempt < 3) {
        await new Promise((r) => setTimeout(r, 1000 * attempt));
        return this.replace(index, attempt + 1);
      }
      // Nothing queued may wait for a worker that will never come.
      if (this.readyWorkers === 0) {
        const down = unavailable('No generation worker is running; retry later.', 'workers_down', 10);
        for (const job of this.queue.splice(0)) this.fail(job, down);
      }
      this.options.onBroken?.(new Error(`generation worker ${index} cannot be restarted: ${message}`));
    }
  }

  /**
   * Hands queued jobs, in order, to the worker running the fewest (they join its batch at its next step), while
   * their KV caches fit the budget.
   */
  private dispatch(): void {
    while (this.queue.length > 0) {
      const job = this.queue[0];
      if (this.kvReservedBytes + job.kvBytes > this.kvBudgetBytes) return;
      let w: PoolWorker | null = null;
      for (const x of this.workers) if (x?.hasRoom && (!w || x.held.length < w.held.length)) w = x;
      if (!w) return;
      this.queue.shift();
      this.begin(job);
      w.post(job);
    }
  }

  private begin(job: Job): void {
    job.state = 'running';
    job.startedAt = performance.now();
    this.running.set(job.id, job);
  }

  private onMessage(w: PoolWorker, message: FromWorker): void {
    if (message.type === 'ready' || message.type === 'model') return;
    const job = w.findJob(message.jobId);
    if (!job) return;
    switch (message.type) {
      case 'token':
        if (job.state !== 'running') return;
        this.tokenMessages++;
        if (message.start) {
          job.promptTokens = message.start.promptTokens;
          job.handlers.onStart?.(message.start.promptTokens, message.start.maxNewTokens, message.start.echo);
        }
        if (job.tokens === 0 && message.tokens > 0)
          this.options.observer?.firstToken?.((performance.now() - job.submittedAt) / 1000);
        job.tokens = message.tokens;
        job.text += message.text;
        if (message.text || message.logprobs?.length) job.handlers.onToken?.(message.text, message.logprobs);
        return;
      case 'done': {
        this.release(w, job);
        if (job.state !== 'running') return;
        job.promptTokens = message.outcome.promptTokens;
        // An unstreamed job posted no token: its time to first token is the queue wait plus the worker's.
        if (job.tokens === 0 && message.firstTokenMs >= 0)
          this.options.observer?.firstToken?.(
            (job.startedAt - job.submittedAt + message.firstTokenMs) / 1000,
          );
        this.options.observer?.finished?.(
          message.outcome.completionTokens,
          (performance.now() - job.startedAt) / 1000,
        );
        this.finish(job, { ...message.outcome, cancelled: false });
        return;
      }
      case 'cancelled':
        this.release(w, job);
        job.promptTokens = message.promptTokens;
        job.tokens = message.completionTokens;
        this.finish(job, job.cancelledResult());
        return;
      case 'rejected':
        this.release(w, job);
        this.fail(job, new ContextOverflow(message.promptTokens, message.maxNewTokens, message.context));
        return;
      case 'failed':
        this.release(w, job);
        this.log('error', `generation failed in worker ${w.index}: ${message.message}`);
        this.fail(
          job,
          new ApiError(
            500,
            'Generation failed inside the server.',
            'server_error',
            null,
            'generation_failed',
          ),
        );
        return;
    }
  }

  /** The worker reported `job`'s end: its slot and KV-cache memory are free, and the queue may move. */
  private release(w: PoolWorker, job: Job): void {
    w.release(job);
    if (!w.held.some((j) => j.state === 'running' && j.cancelRequested)) w.clearWatchdog();
    queueMicrotask(() => this.dispatch());
    this.idleWaiters.check();
  }

  private finish(job: Job, result: JobResult): void {
    if (!job.finish(result)) return;
    this.running.delete(job.id);
    this.idleWaiters.check();
  }

  private fail(job: Job, err: Error): void {
    if (!job.fail(err)) return;
    this.running.delete(job.id);
    this.idleWaiters.check();
  }
}
