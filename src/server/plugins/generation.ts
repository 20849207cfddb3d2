// The generation service: starts the worker pool once the model is loaded, tracks loading/ready/draining, drains on close.
import type { FastifyInstance } from 'fastify';
import { ApiError, unavailable } from '../errors.js';
import type { ServedModel } from '../model.js';
import type { Job, JobHandlers } from '../workers/job.js';
import { ModelLoad } from '../workers/model-load.js';
import { WorkerPool } from '../workers/pool.js';
import type { JobRequest } from '../workers/protocol.js';
import { shared } from './shared.js';

export type ServiceState = 'loading' | 'ready' | 'draining' | 'failed';

export interface GenerationOptions {
  /**
   * The loaded model, a promise of it (the app answers /health and /ready while it loads), or its load in a
   * generation worker, which then becomes the pool's first worker.
   */
  model: ServedModel | Promise<ServedModel> | ModelLoad;
  workers: number;
  queueLimit: number;
  /** Generations a worker advances together (see PoolOptions.batch). */
  batch?: number;
  /** The KV-cache budget of running generations in bytes (see PoolOptions.kvBudgetBytes). */
  kvCacheBytes?: number;
  cancelGraceMs?: number;
}

export class GenerationService {
  state: ServiceState = 'loading';
  model: ServedModel | null = null;
  pool: WorkerPool | null = null;
  /**
   * Resolves when the model is loaded and a worker can generate (the others join as they start: see
   * allWorkersReady); rejects with the reason the model or every worker failed.
   */
  readonly ready: Promise<void>;
  failure: Error | null = null;

  constructor(
    private readonly app: FastifyInstance,
    private readonly options: GenerationOptions,
  ) {
    this.ready = this.start();
    this.ready.catch(() => {});
  }

  private async start(): Promise<void> {
    try {
      const source = this.options.model;
      const load = source instanceof ModelLoad ? source : null;
      const model = await (source instanceof ModelLoad ? source.model : source);
      this.model = model;
      const metrics = this.app.metrics;
      const pool = new WorkerPool(
        {
          config: model.config,
          params: model.params,
          tokenizer: model.tokenizer,
          head: model.head,
          modelId: model.id,
        },
        {
          size: this.options.workers,
          queueLimit: this.options.queueLimit,
          batch: this.options.batch,
          kvBudgetBytes: this.options.kvCacheBytes,
          firstWorker: load?.takeWorker(),
          cancelGraceMs: this.options.cancelGraceMs,
          log: (level, message) => this.app.log[level](message),
          onBroken: (err) => {
            this.state = 'failed';
            this.failure = err;
            this.app.log.error(err.message);
          },
          observer: {
            firstToken: (s) => metrics.timeToFirstToken.observe(s),
            finished: (tokens, s) => {
              metrics.generatedTokens.inc(tokens);
              if (s > 0 && tokens > 0) metrics.tokensPerSecond.observe(tokens / s);
            },
            aborted: () => metrics.aborted.inc(),
            workerReplaced: () => metrics.workerRestarts.inc(),
          },
        },
      );
      this.pool = pool;
      metrics.source = pool;
      await pool.start();
      if (this.state === 'loading') this.state = 'ready';
      const up = pool.readyWorkers;
      this.app.log.info(
        `model ready: ${model.parameters} parameters (${model.format}), context ${model.config.nPositions}, ${up} of ${pool.size} workers ready, tokenizer from ${model.tokenizerSource}`,
      );
      if (up < pool.size) {
        const since = performance.now();
        void pool.allReady().then(() => {
          if (pool.readyWorkers === pool.size)
            this.app.log.info(
              `all ${pool.size} workers ready (${(performance.now() - since).toFixed(0)} ms after the first)`,
            );
        });
      }
    } catch (err) {
      this.state = 'failed';
      this.failure = err instanceof Error ? err : new Error(String(err));
      await this.pool?.close();
      throw this.failure;
    }
  }

  /** Resolves once every worker of the pool is ready (`ready` resolves when the first can generate). */
  async allWorkersReady(): Promise<void> {
    await this.ready;
    await this.pool?.allReady();
  }

  /** Queues a generation; 503 (with Retry-After) while loading, draining, or when the queue is full. */
  submit(request: JobRequest, handlers?: JobHandlers): Job {
    if (this.state !== 'ready' || !this.pool) {
      this.app.metrics.rejected.inc({ reason: this.state });
      if (this.state === 'draining')
        throw unavailable('The server is shutting down; retry on another instance.', 'shutting_down');
      if (this.state === 'failed')
        throw unavailable('The model could not be served; retry later.', 'workers_down', 10);
      throw unavailable('The model is still loading; retry shortly.', 'model_loading', 5);
    }
    try {
      return this.pool.submit(request, handlers);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'queue_full')
        this.app.metrics.rejected.inc({ reason: 'queue_full' });
      throw err;
    }
  }

  /**
   * Stops taking new generations and waits for the running ones up to `timeoutMs`; what is still running
   * then is cancelled (its stream ends with an error event). Resolves once no job is left.
   */
  async drain(timeoutMs: number): Promise<{ cancelled: number }> {
    if (this.state === 'ready' || this.state === 'loading') this.state = 'draining';
    const pool = this.pool;
    if (!pool) return { cancelled: 0 };
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const outcome = await Promise.race([pool.idle().then(() => 'idle' as const), timedOut]);
    clearTimeout(timer);
    if (outcome === 'idle') return { cancelled: 0 };
    const cancelled = pool.inFlight + pool.queueDepth;
    pool.cancelAll();
    await pool.idle();
    return { cancelled };
  }

  async close(): Promise<void> {
    if (this.state !== 'failed') this.state = 'draining';
    await this.ready.catch(() => {});
    await this.pool?.close();
    // A loading worker no pool took (the start failed before the pool was made).
    if (this.options.model instanceof ModelLoad) await this.options.model.discard();
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    generation: GenerationService;
  }
}

export const generationPlugin = shared<GenerationOptions>(
  'generation',
  async (app: FastifyInstance, options) => {
    const service = new GenerationService(app, options);
    app.decorate('generation', service);
    app.addHook('onClose', async () => {
      await service.close();
    });
  },
);
