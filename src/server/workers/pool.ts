// A fixed pool of generation worker threads with a bounded FIFO queue, cancellation and crash recovery.
import { statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { DescribedLogprob } from '../../generate/logprobs.js';
import { ApiError, unavailable } from '../errors.js';
import type { ServedModel } from '../model.js';
import type { EchoedPrompt, FromWorker, JobOutcome, JobRequest, ToWorker, WorkerInit } from './protocol.js';

/** Compiled (dist/*.js) or run from source under tsx (*.ts): the worker file has the same extension as this one. */
const fromSource = import.meta.url.endsWith('.ts');
const workerUrl = fromSource ? new URL('./generation-worker.ts', import.meta.url) : compiledWorker();
/** The file generation workers run (exported for tests). */
export const generationWorkerFile = workerUrl.href;

/**
 * The worker bundled by `npm run build` (generation-worker.cjs: one CommonJS file, loaded without the ES
 * module loader) when it is not older than the compiled module, else the module itself (a tsc-only rebuild);
 * started through its entry (generation-worker-entry.cjs), which runs it through V8's code cache, when the
 * build made one.
 */
function compiledWorker(): URL {
  const module = new URL('./generation-worker.js', import.meta.url);
  const bundle = new URL('./generation-worker.cjs', import.meta.url);
  const entry = new URL('./generation-worker-entry.cjs', import.meta.url);
  try {
    const built = statSync(module).mtimeMs;
    if (statSync(bundle).mtimeMs < built) return module;
    return statSync(entry).mtimeMs >= built ? entry : bundle;
  } catch {
    return module;
  }
}

/** Whether workers start through the entry that runs their bundle through V8's code cache (compiled builds). */
export const workersUseCodeCache = workerUrl.href.endsWith('/generation-worker-entry.cjs');

/**
 * Node 20 does not apply the parent's `--import tsx` loader hooks inside worker threads, so from source
 * the worker first registers tsx itself; compiled JS loads directly. The model follows in an init message.
 */
function newWorker(workerData?: unknown): Worker {
  if (!fromSource) return new Worker(workerUrl, { workerData });
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(workerUrl.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}

/** Workers started ahead of a pool (the one loading the model), in the order pools take them; one that exits meanwhile leaves. */
const prestarted: Worker[] = [];

/** Puts a started worker first in line for the next pool; it leaves the line if it exits. */
function keepPrestarted(worker: Worker): void {
  // Until a pool adopts it, a failure only removes it from the list (the pool then starts a fresh one).
  worker.on('error', () => {});
  worker.once('exit', () => {
    const at = prestarted.indexOf(worker);
    if (at >= 0) prestarted.splice(at, 1);
  });
  prestarted.unshift(worker);
}

/**
 * Loads the served model (loadServedModel) in a generation worker started for it, so the main thread can
 * load other code meanwhile and no thread starts only to load; resolves with the model in shared memory,
 * or rejects with loadServedModel's message. The worker then waits first in line for the next pool.
 */
export function loadServedModelInThread(dir: string): Promise<ServedModel> {
  const worker = newWorker({ loadModel: dir });
  keepPrestarted(worker);
  return new Promise((resolve, reject) => {
    let settled = false;
    const onMessage = (m: FromWorker) => {
      if (m.type !== 'model') return;
      worker.off('message', onMessage);
      settled = true;
      if (m.ok) {
        // Loaded: like any prestarted worker, it keeps the process alive only once a pool takes it.
        if (prestarted.includes(worker)) worker.unref();
        resolve(m.model);
      } else {
        reject(new Error(m.message));
        // Out of line at once: a pool started before it has exited must not take it.
        const at = prestarted.indexOf(worker);
        if (at >= 0) prestarted.splice(at, 1);
        void worker.terminate();
      }
    };
    worker.on('message', onMessage);
    worker.once('error', (err) => {
      if (!settled) reject(err);
      settled = true;
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`the model loader thread exited (code ${code}) before loading ${dir}`));
      settled = true;
    });
  });
}

/** A prestarted worker (now keeping the process alive), or a new one. */
function takeWorker(): Worker {
  const worker = prestarted.shift();
  if (!worker) return newWorker();
  worker.ref();
  return worker;
}

export interface PoolOptions {
  size: number;
  /** Jobs that may wait for a worker; one more is refused with 503. */
  queueLimit: number;
  /** After a cancel, how long a worker may take to notice before it is terminated and replaced. */
  cancelGraceMs?: number;
  observer?: PoolObserver;
  /** Called when a dead worker cannot be replaced: the service is no longer healthy. */
  onBroken?(err: Error): void;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  /**
   * Ask the first worker to save its code cache once it has finished its first job (default true; see
   * saveWorkerCodeCache). A warm-up that runs several jobs first turns it off and asks itself.
   */
  saveCodeCacheAfterFirstJob?: boolean;
}

/** Hooks for metrics; all optional. Times are in seconds. */
export interface PoolObserver {
  firstToken?(secondsSinceSubmit: number): void;
  finished?(completionTokens: number, generationSeconds: number): void;
  aborted?(): void;
  workerReplaced?(): void;
}

export interface JobHandlers {
  /**
   * The prompt fit in the context: called with the first generated text, just before its onToken (or, with
   * echo, as soon as the prompt is scored, with its tokens).
   */
  onStart?(promptTokens: number, maxNewTokens: number, echo?: EchoedPrompt): void;
  /**
   * Text released since the last call (several tokens' worth when coalesced), and with request.logprobs the
   * log-probabilities of the tokens that released it; called when either is not empty.
   */
  onToken?(text: string, logprobs?: DescribedLogprob[]): void;
}

export interface JobResult extends JobOutcome {
  /** True when the job was cancelled before it finished; text is what was generated until then. */
  cancelled: boolean;
}

/** Thrown by the worker side when the prompt does not fit; routes turn it into their own 400. */
export class ContextOverflow extends Error {
  override name = 'ContextOverflow';
  constructor(
    readonly promptTokens: number,
    readonly maxNewTokens: number,
    readonly context: number,
  ) {
    super(`prompt of ${promptTokens} tokens + ${maxNewTokens} new tokens exceed the context of ${context}`);
  }
}

export class Job {
  readonly result: Promise<JobResult>;
  /** 'queued' → 'running' → 'ended'. */
  state: 'queued' | 'running' | 'ended' = 'queued';
  cancelRequested = false;
  readonly submittedAt = performance.now();
  startedAt = 0;
  text = '';
  tokens = 0;
  promptTokens = 0;
  resolve!: (r: JobResult) => void;
  reject!: (e: Error) => void;

  constructor(
    readonly id: number,
    readonly request: JobRequest,
    readonly handlers: JobHandlers,
    private readonly pool: WorkerPool,
  ) {
    this.result = new Promise<JobResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // A caller that only cancels must not trigger an unhandled rejection.
    this.result.catch(() => {});
  }

  /** Stops the job: a queued one is dropped, a running one stops at the next token. Idempotent. */
  cancel(): void {
    this.pool.cancel(this);
  }
}

interface Slot {
  index: number;
  worker: Worker;
  ready: boolean;
  /** The worker packed its own copy of the LM head (the shared one could not be adopted). */
  ownHead: boolean;
  job: Job | null;
  /**
   * A job already posted to this busy worker, which starts it as soon as `job` ends (no round trip through a
   * busy main thread in between). It still counts as queued until then.
   */
  next: Job | null;
  /** Set when the pool itself terminated this worker (close or replacement). */
  retiring: boolean;
  watchdog: NodeJS.Timeout | null;
  /** This worker's cancel flags: [0] the id of the running job to stop, [1] of the posted next one. */
  cancel: Int32Array;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly running = new Map<number, Job>();
  private nextJobId = 1;
  private closing = false;
  private idleWaiters: Array<() => void> = [];
  private allReadyWaiters: Array<() => void> = [];
  /** The first worker's answer to save-code-cache (asked once per pool), and who waits for it. */
  private codeCacheSaving: Promise<string> | null = null;
  private codeCacheAnswer: ((what: string) => void) | null = null;
  private readonly cancelGraceMs: number;
  /** Workers replaced after dying; for tests and logs. */
  replacements = 0;
  /** Token messages received from workers (a non-streamed job sends one, a streamed one one per token). */
  tokenMessages = 0;

  constructor(
    private readonly init: Omit<WorkerInit, 'cancel'>,
    private readonly options: PoolOptions,
  ) {
    if (!Number.isInteger(options.size) || options.size < 1) throw new RangeError('pool size must be >= 1');
    if (!Number.isInteger(options.queueLimit) || options.queueLimit < 0)
      throw new RangeError('queue limit must be >= 0');
    this.cancelGraceMs = options.cancelGraceMs ?? 2000;
  }

  /**
   * Starts every worker and resolves once one of them can generate (the worker that loaded the model, when it
   * is in line, is ready at once, and the others start after it); the others join as they come up (allReady). Rejects, with the first
   * worker's reason, only when none starts. A worker that fails to start while another serves is replaced
   * (with retries, as a crashed one is).
   */
  async start(): Promise<void> {
    // The worker that loaded the model (in line when serve started it) answers at once; the others boot once
    // it has, so their boots do not take the two cores from its start and the main thread's listen.
    const lead = prestarted.length > 0 && this.options.size > 1 ? this.spawn(0) : null;
    if (lead) await lead.catch(() => {});
    const started = lead ? [lead] : [];
    for (let i = started.length; i < this.options.size; i++) started.push(this.spawn(i));
    const first = Promise.any(started);
    started.forEach((spawned, index) => {
      spawned.catch((err: Error) =>
        first.then(
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
      await first;
    } catch (err) {
      throw err instanceof AggregateError ? (err.errors[0] as Error) : err;
    }
  }

  /**
   * Asks the first worker (the one that loaded the model, when it was in line: it ran the load as well as the
   * generation code) to write V8's code cache of the worker bundle from what it has compiled, unless the cache
   * it started from was current, and resolves with what happened. Asked once per pool: the pool asks by itself
   * once that worker has finished its first job; the image's build asks directly, with `force` (its worker
   * ran more of the code than whatever wrote a current cache).
   */
  saveWorkerCodeCache(options: { force?: boolean } = {}): Promise<string> {
    if (!workersUseCodeCache) return Promise.resolve('not used: the workers run from their modules');
    this.codeCacheSaving ??= new Promise<string>((resolve) => {
      const slot = this.slots[0];
      if (!slot || this.closing) {
        resolve('not saved: no worker');
        return;
      }
      this.codeCacheAnswer = resolve;
      const message: ToWorker = { type: 'save-code-cache', force: options.force === true };
      slot.worker.postMessage(message);
    });
    return this.codeCacheSaving;
  }

  /** Resolves once every worker is ready (start resolves at the first), or when the pool closes. */
  allReady(): Promise<void> {
    if (this.closing || this.readyWorkers === this.options.size) return Promise.resolve();
    return new Promise((resolve) => this.allReadyWaiters.push(resolve));
  }

  get size(): number {
    return this.slots.length;
  }
  /** Jobs waiting: in the queue, or posted to a busy worker as its next (and not cancelled since). */
  get queueDepth(): number {
    return this.queue.length + this.postedBehind;
  }
  /** Waiting jobs already posted to a busy worker, which starts each without waiting for this thread. */
  get postedBehind(): number {
    let posted = 0;
    for (const s of this.slots) if (s?.next && s.next.state !== 'ended') posted++;
    return posted;
  }
  get inFlight(): number {
    return this.running.size;
  }
  /** Workers that have built the model and can take a job. */
  /** Ready workers that compute in their own copy of the LM head instead of the shared one (0 when all share it). */
  get workersWithOwnHead(): number {
    return this.slots.filter((s) => s.ready && s.ownHead).length;
  }

  get readyWorkers(): number {
    return this.slots.filter((s) => s.ready).length;
  }
  get busyWorkers(): number {
    return this.slots.filter((s) => s.job !== null).length;
  }

  /** Queues a job; throws a 503 ApiError when the queue is full or the pool is closing. */
  submit(request: JobRequest, handlers: JobHandlers = {}): Job {
    if (this.closing)
      throw unavailable('The server is shutting down; retry on another instance.', 'shutting_down');
    const idle = this.slots.find((s) => s.ready && s.job === null);
    if (!idle && this.queueDepth >= this.options.queueLimit) {
      throw unavailable(
        `The server is busy (${this.queueDepth} requests waiting); retry shortly.`,
        'queue_full',
        2,
      );
    }
    const job = new Job(this.nextJobId, request, handlers, this);
    this.nextJobId = this.nextJobId >= 0x7fffffff ? 1 : this.nextJobId + 1;
    this.queue.push(job);
    this.dispatch();
    return job;
  }

  cancel(job: Job): void {
    if (job.state === 'ended' || job.cancelRequested) return;
    job.cancelRequested = true;
    this.options.observer?.aborted?.();
    const unstarted: JobResult = {
      text: '',
      finishReason: 'length',
      promptTokens: 0,
      completionTokens: 0,
      cancelled: true,
    };
    const holder = this.slots.find((s) => s?.next === job);
    if (holder) {
      // Already posted to a busy worker: flag it so the worker skips it, and answer now. The slot keeps it
      // until the worker reports the skip.
      Atomics.store(holder.cancel, 1, job.id);
      this.finish(job, unstarted);
      return;
    }
    if (job.state === 'queued') {
      const at = this.queue.indexOf(job);
      if (at >= 0) this.queue.splice(at, 1);
      this.finish(job, unstarted);
      return;
    }
    const slot = this.slots.find((s) => s.job === job);
    if (!slot) return;
    Atomics.store(slot.cancel, 0, job.id);
    if (!slot.watchdog) {
      // A worker stuck in one long step cannot see the flag; replace it rather than wait forever.
      slot.watchdog = setTimeout(() => {
        if (slot.job === job) {
          this.log(
            'warn',
            `worker ${slot.index} ignored a cancel for ${this.cancelGraceMs} ms; replacing it`,
          );
          void slot.worker.terminate();
        }
      }, this.cancelGraceMs);
      slot.watchdog.unref();
    }
  }

  /** Cancels every queued and running job (used when a drain runs out of time). */
  cancelAll(): void {
    const posted = this.slots.flatMap((s) => (s?.next ? [s.next] : []));
    for (const job of [...this.queue, ...posted, ...this.running.values()]) job.cancel();
  }

  /** Resolves when no job is queued or running. */
  idle(): Promise<void> {
    if (this.queueDepth === 0 && this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Terminates one worker as if it had crashed: its job (if any) fails with a 503 and a fresh worker
   * takes its place. Used by the cancel watchdog, and by tests to prove recovery.
   */
  async terminateWorker(index: number): Promise<void> {
    const slot = this.slots[index];
    if (!slot) throw new RangeError(`no worker ${index}`);
    await slot.worker.terminate();
  }

  /** Index of a worker running a job, or -1. */
  busyWorkerIndex(): number {
    return this.slots.findIndex((s) => s.job !== null);
  }

  /** Stops all workers; queued and running jobs fail with a 503. */
  async close(): Promise<void> {
    this.closing = true;
    this.wakeAllReady();
    const err = unavailable('The server is shutting down; retry on another instance.', 'shutting_down');
    for (const job of this.queue.splice(0)) this.fail(job, err);
    await Promise.all(
      this.slots.map((slot) => {
        slot.retiring = true;
        if (slot.job) this.fail(slot.job, err);
        if (slot.next) this.fail(slot.next, err);
        return slot.worker.terminate();
      }),
    );
  }

  private answerCodeCache(what: string): void {
    const answer = this.codeCacheAnswer;
    this.codeCacheAnswer = null;
    answer?.(what);
  }

  private log(level: 'info' | 'warn' | 'error', message: string): void {
    this.options.log?.(level, message);
  }

  private spawn(index: number): Promise<void> {
    const cancel = new Int32Array(new SharedArrayBuffer(8));
    const init: WorkerInit = { ...this.init, cancel };
    const worker = takeWorker();
    const message: ToWorker = { type: 'init', init };
    worker.postMessage(message);
    const slot: Slot = {
      index,
      worker,
      ready: false,
      ownHead: false,
      job: null,
      next: null,
      retiring: false,
      watchdog: null,
      cancel,
    };
    this.slots[index] = slot;
    return new Promise<void>((resolve, reject) => {
      let lastError: Error | null = null;
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          slot.ready = true;
          slot.ownHead = message.ownHead;
          if (message.ownHead)
            this.log('warn', `generation worker ${index} packed its own copy of the LM head (more memory)`);
          resolve();
          this.dispatch();
          if (this.readyWorkers === this.options.size) this.wakeAllReady();
          return;
        }
        this.onMessage(slot, message);
      });
      worker.on('error', (err) => {
        lastError = err;
        this.log('error', `generation worker ${index} failed: ${err.message}`);
      });
      worker.on('exit', (code) => {
        if (slot.watchdog) clearTimeout(slot.watchdog);
        if (index === 0) this.answerCodeCache(`not saved: generation worker 0 exited (code ${code})`);
        if (!slot.ready) {
          reject(
            new Error(
              `generation worker ${index} exited (code ${code}) before it was ready${lastError ? `: ${lastError.message}` : ''}`,
            ),
          );
        }
        if (slot.job) {
          const job = slot.job;
          slot.job = null;
          if (job.cancelRequested) this.finishCancelled(job);
          else
            this.fail(
              job,
              unavailable('The generation worker stopped unexpectedly; retry the request.', 'worker_crashed'),
            );
        }
        if (slot.next) {
          // Posted but not started as far as the client can tell (nothing of it was reported): it goes back
          // to the head of the queue for another worker.
          const next = slot.next;
          slot.next = null;
          if (next.state !== 'ended') {
            this.queue.unshift(next);
            queueMicrotask(() => this.dispatch());
          }
        }
        const wasReady = slot.ready;
        slot.ready = false;
        if (this.closing || slot.retiring || !wasReady) return;
        this.log('warn', `generation worker ${index} exited (code ${code}); starting a replacement`);
        this.replacements++;
        this.options.observer?.workerReplaced?.();
        void this.replace(index, 1);
      });
    });
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

  private dispatch(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s?.ready && s.job === null);
      if (!slot) break;
      const job = this.queue.shift()!;
      this.begin(slot, job);
      this.post(slot, job);
    }
    // Work still waiting: hand each busy worker its next job now, so it starts the moment it is free.
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s?.ready && s.job !== null && s.next === null);
      if (!slot) return;
      const job = this.queue.shift()!;
      slot.next = job;
      this.post(slot, job);
    }
  }

  /** Marks `job` as running on `slot`. */
  private begin(slot: Slot, job: Job): void {
    job.state = 'running';
    job.startedAt = performance.now();
    slot.job = job;
    this.running.set(job.id, job);
  }

  private post(slot: Slot, job: Job): void {
    const message: ToWorker = {
      type: 'job',
      jobId: job.id,
      request: job.request,
      stream: job.handlers.onToken !== undefined,
    };
    slot.worker.postMessage(message);
  }

  private onMessage(slot: Slot, message: FromWorker): void {
    if (message.type === 'ready' || message.type === 'model') return;
    if (message.type === 'code-cache') {
      this.answerCodeCache(`${message.cache}; ${message.saved}`);
      return;
    }
    const job = slot.job;
    if (!job || job.id !== message.jobId) return;
    switch (message.type) {
      case 'token':
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
      case 'done':
        job.promptTokens = message.outcome.promptTokens;
        // An unstreamed job posted no token: its time to first token is the queue wait plus the worker's.
        if (job.tokens === 0 && message.firstTokenMs >= 0)
          this.options.observer?.firstToken?.(
            (job.startedAt - job.submittedAt + message.firstTokenMs) / 1000,
          );
        this.release(slot);
        this.options.observer?.finished?.(
          message.outcome.completionTokens,
          (performance.now() - job.startedAt) / 1000,
        );
        this.finish(job, { ...message.outcome, cancelled: false });
        if (
          slot.index === 0 &&
          workersUseCodeCache &&
          !this.codeCacheSaving &&
          this.options.saveCodeCacheAfterFirstJob !== false
        )
          void this.saveWorkerCodeCache().then((what) =>
            this.log('info', `generation worker code cache: ${what}`),
          );
        return;
      case 'cancelled':
        this.release(slot);
        job.promptTokens = message.promptTokens;
        job.tokens = message.completionTokens;
        this.finishCancelled(job);
        return;
      case 'rejected':
        this.release(slot);
        this.fail(job, new ContextOverflow(message.promptTokens, message.maxNewTokens, message.context));
        return;
      case 'failed':
        this.release(slot);
        this.log('error', `generation failed in worker ${slot.index}: ${message.message}`);
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

  private release(slot: Slot): void {
    slot.job = null;
    if (slot.watchdog) {
      clearTimeout(slot.watchdog);
      slot.watchdog = null;
    }
    // The worker moves on to its posted next job: it becomes the running one, its cancel flag moving along
    // (set before the old one is cleared, so the worker never misses it). A cancel aimed at the finished
    // job is cleared so the id can never match a later one by accident.
    const next = slot.next;
    Atomics.store(slot.cancel, 0, Atomics.load(slot.cancel, 1));
    Atomics.store(slot.cancel, 1, 0);
    if (next) {
      slot.next = null;
      if (next.state === 'ended') {
        // Cancelled while posted: the worker skips it and reports that; keep the slot until it does.
        slot.job = next;
      } else {
        this.begin(slot, next);
      }
    }
    queueMicrotask(() => this.dispatch());
    this.checkIdle();
  }

  private finishCancelled(job: Job): void {
    this.finish(job, {
      text: job.text,
      finishReason: 'length',
      promptTokens: job.promptTokens,
      completionTokens: job.tokens,
      cancelled: true,
    });
  }

  private finish(job: Job, result: JobResult): void {
    if (job.state === 'ended') return;
    job.state = 'ended';
    this.running.delete(job.id);
    job.resolve(result);
    this.checkIdle();
  }

  private fail(job: Job, err: Error): void {
    if (job.state === 'ended') return;
    job.state = 'ended';
    this.running.delete(job.id);
    job.reject(err);
    this.checkIdle();
  }

  private wakeAllReady(): void {
    const waiters = this.allReadyWaiters;
    this.allReadyWaiters = [];
    for (const w of waiters) w();
  }

  private checkIdle(): void {
    if (this.queueDepth > 0 || this.running.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
