// How a server process starts and ends: the model loads (or is fetched, then loads) in a generation worker while this thread loads the HTTP stack, it listens once the model is in (at once for a fetch), and it exits after the drain.
import { readFile } from 'node:fs/promises';
import type { Worker } from 'node:worker_threads';
import type { RateLimitOptions } from '../defaults.js';
import { loadModelInWorker } from '../workers/model-load.js';
import { FETCH_STALL_MS, startModelFetch } from './model-fetch.js';

export const DEFAULT_SYSTEM_PROMPT =
  'You are tiny-llm, a small assistant that answers questions about this project.';

export interface ServiceOptions {
  /** The model directory or GPT-2 .gguf file to serve (null when the model is fetched from `modelUri`). */
  modelDir: string | null;
  /** 'q8_0': quantise the float32 matrices at load. */
  quantize?: 'q8_0';
  /** gs://BUCKET/PREFIX of a model directory fetched at start (see startModelFetch), or null. */
  modelUri: string | null;
  port: number;
  host: string;
  workers: number;
  queueLimit: number;
  /** Generations a worker advances together. */
  batch?: number;
  /** KV-cache budget of running generations in bytes (default from the model's shape). */
  kvCacheBytes?: number;
  rateLimit: RateLimitOptions | false;
  /** Keys accepted as `Authorization: Bearer <key>` (none: the API is open). */
  apiKeys: readonly string[];
  /** Origins allowed to call the API from a browser ('*': any); none: no CORS. */
  corsOrigins: readonly string[];
  /** Proxy hops in front whose X-Forwarded-For entries are trusted, and where that number came from. */
  trustProxy: { hops: number; source: string };
  logLevel: string;
  /** The system prompt's file; a missing or blank one gives DEFAULT_SYSTEM_PROMPT. */
  systemPromptFile: string;
  /** Project whose traces log lines link to. */
  traceProject?: string;
}

/** What the built CLI's launcher did before the bundle ran (nothing, from source). */
export const launch: { codeCache: string; modelWorker: Worker | null } = {
  /** What the CLI bundle's V8 code cache did (see runCachedCommonJs), for the start-up log. */
  codeCache: 'none: running from source',
  /** The generation worker it booted for a serving command, before loading the bundle (see bootModelWorker). */
  modelWorker: null,
};

/** The system prompt file's text, or the built-in default when the file is missing or blank. */
export async function systemPrompt(file: string): Promise<{ text: string; source: string }> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (text) return { text, source: file };
    return { text: DEFAULT_SYSTEM_PROMPT, source: `built-in default (${file} is empty)` };
  } catch {
    return { text: DEFAULT_SYSTEM_PROMPT, source: `built-in default (${file} not found)` };
  }
}

/**
 * Serves until SIGTERM/SIGINT and resolves with the exit code: 0 after a drain, 1 when the model cannot be
 * served. A model directory is loaded before the server listens (a broken one exits 1 without listening); a
 * model fetched from `modelUri` is fetched and loaded while the server already answers /health, with /ready
 * 503 "loading", and a failed fetch or load ends it with exit code 1.
 */
export async function runService(options: ServiceOptions): Promise<number> {
  // The fetch starts at once; its lines wait here until the logger exists.
  const early: string[] = [];
  let log = (line: string) => {
    early.push(line);
  };
  const fetching = options.modelUri
    ? startModelFetch(options.modelUri, { log: (line) => log(line), stallTimeoutMs: FETCH_STALL_MS })
    : null;
  const modelDir = fetching ? fetching.dir : (options.modelDir ?? 'model');
  // The worker that loads the model (booted by the launcher before it loaded the CLI, when built) starts first;
  // this thread loads the HTTP stack (fastify, pino, prom-client and the precompiled validators) meanwhile.
  const load = loadModelInWorker(modelDir, launch.modelWorker, options.quantize);
  launch.modelWorker = null;
  const [{ createLogger }, { startServer, StoppedBeforeListening }, { precompiledValidators }] =
    await Promise.all([
      import('../logging.js'),
      import('../server.js'),
      import('./precompiled-validators.js'),
    ]);
  const logger = createLogger({ level: options.logLevel });
  log = (line) => logger.info(line);
  for (const line of early) logger.info(line);
  logger.info(
    `start-up: CLI code cache ${launch.codeCache}; request validators ${precompiledValidators ? 'compiled at build time' : 'compiled now'}`,
  );
  const prompt = await systemPrompt(options.systemPromptFile);
  logger.info(`system prompt from ${prompt.source}`);

  const loaded = load.model.catch((err: unknown) => {
    throw new Error(`cannot serve the model: ${err instanceof Error ? err.message : String(err)}`);
  });
  loaded.catch(() => {});
  if (fetching) {
    // On Cloud Run the file system is memory: once the weights are in memory, their file goes.
    void load.model.then(
      () =>
        fetching.dropWeights().then(
          (names) => {
            if (names.length > 0)
              logger.info(
                `removed the fetched ${names.join(', ')} from ${fetching.root}: the weights are in memory`,
              );
          },
          (err: Error) => logger.warn(`could not remove the fetched weights: ${err.message}`),
        ),
      () => {},
    );
  }
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer({
      port: options.port,
      host: options.host,
      model: load,
      // A directory: listen once the model is loaded and checked. A fetch: listen at once, so that the platform
      // sees the process alive (/health) while the download runs.
      listenAfter: fetching ? undefined : loaded,
      systemPrompt: prompt.text,
      workers: options.workers,
      queueLimit: options.queueLimit,
      batch: options.batch,
      kvCacheBytes: options.kvCacheBytes,
      rateLimit: options.rateLimit,
      logger,
      trustProxy: options.trustProxy.hops,
      apiKeys: options.apiKeys,
      corsOrigins: options.corsOrigins,
      traceProject: options.traceProject,
      validators: precompiledValidators ? { use: precompiledValidators } : undefined,
    });
  } catch (err) {
    // A SIGTERM while starting is a shutdown like any other.
    if (err instanceof StoppedBeforeListening) return exitAfterFlush(logger, 0);
    throw err;
  }
  const format = fetching ? null : (await load.model).format;
  const pool = server.app.generation.pool;
  const budget = pool
    ? `, ${pool.batch} generations a step each, KV caches within ${(pool.kvBudgetBytes / 2 ** 20).toFixed(1)} MiB`
    : '';
  logger.info(
    fetching
      ? `serving ${options.modelUri} (fetching into ${fetching.root}) on ${server.url} with ${options.workers} workers${budget}`
      : `serving ${options.modelDir} (${format}) on ${server.url} with ${options.workers} workers${budget}`,
  );
  const { apiKeys, corsOrigins, trustProxy } = options;
  logger.info(
    `access: ${apiKeys.length > 0 ? `${apiKeys.length} API key${apiKeys.length === 1 ? '' : 's'} required` : 'no API key (open)'}; CORS ${corsOrigins.length > 0 ? corsOrigins.join(', ') : 'off'}; ` +
      `client address ${trustProxy.hops > 0 ? `from X-Forwarded-For through ${trustProxy.hops} trusted proxy hop${trustProxy.hops === 1 ? '' : 's'}` : 'of the connection (X-Forwarded-For ignored)'} (${trustProxy.source})`,
  );
  return exitAfterFlush(logger, await server.closed);
}

/**
 * Writes out the buffered log lines, then ends the process with `code`: nothing left behind (a timer, a
 * socket) may hold a container's shutdown past the drain deadline.
 */
function exitAfterFlush(logger: { flush(cb?: (err?: Error) => void): void }, code: number): Promise<number> {
  return new Promise((resolve) => {
    const exit = () => {
      resolve(code);
      setTimeout(() => process.exit(code), 100).unref();
    };
    const fallback = setTimeout(exit, 500);
    logger.flush(() => {
      clearTimeout(fallback);
      exit();
    });
  });
}
