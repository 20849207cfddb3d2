// `tiny-llm serve`: checks the model directory, then serves the chat page and the APIs until SIGTERM/SIGINT.
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
// Only light modules load up front: the worker that loads the model starts first and loads while the HTTP
// stack (fastify, pino, prom-client: the slow part of a cold start) loads in the main thread.
import { DEFAULT_QUEUE_LIMIT, DEFAULT_RATE_LIMIT, PACKAGE_ROOT } from '../../server/defaults.js';
import { parseList } from '../../server/keys.js';
import type { PrecompiledValidators } from '../../server/validators.js';
import { loadModelInWorker } from '../../server/workers/model-load.js';
import { type Command, numberArg, parseCommandArgs } from '../command.js';

const usage = `usage: tiny-llm serve [options]

  --model-dir D        model directory (default $MODEL_DIR or ./model)
  --port N             port (default $PORT or 8000)
  --host H             address to bind (default 0.0.0.0)
  --workers N          generation worker threads (default $WORKERS or one per CPU core)
  --queue-limit N      generations that may wait for a worker before 503 (default ${DEFAULT_QUEUE_LIMIT})
  --rate-limit N       requests per client per minute, 0 = off (default $RATE_LIMIT or ${DEFAULT_RATE_LIMIT.max})
  --api-key K          require "Authorization: Bearer K" on every route but /health, /ready and the chat
                       page's files; repeat it (or comma-separate) for several keys (default $API_KEY: none)
  --cors-origin O      let browsers on origin O call the API (CORS, preflights answered); repeat it or
                       comma-separate; '*' for any origin (default $CORS_ORIGIN: none)

environment: $SYSTEM_PROMPT_FILE (default data/system_prompt.txt in the package), $LOG_LEVEL (info),
$GOOGLE_CLOUD_PROJECT (links log lines to traces), $TRUST_PROXY_HOPS (proxies in front, default 1)`;

export const DEFAULT_SYSTEM_PROMPT =
  'You are tiny-llm, a small assistant that answers questions about this project.';

/** The system prompt file's text, or the built-in default when the file is missing or blank. */
async function systemPrompt(file: string): Promise<{ text: string; source: string }> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (text) return { text, source: file };
    return { text: DEFAULT_SYSTEM_PROMPT, source: `built-in default (${file} is empty)` };
  } catch {
    return { text: DEFAULT_SYSTEM_PROMPT, source: `built-in default (${file} not found)` };
  }
}

type HttpStack = Pick<typeof import('../../server/logging.js'), 'createLogger'> &
  Pick<typeof import('../../server/server.js'), 'startServer'> & {
    /** Whether V8 took the bundle's code cache, or why not (absent when running the modules). */
    codeCache?: string;
    saveCodeCache?: () => Promise<string>;
    /** The request validators compiled at build time (validators.cjs), when the build made them. */
    validators?: { exports: PrecompiledValidators } | null;
  };

/** True when dist/server/http-stack.cjs exists and is not older than the modules it bundles (a tsc-only rebuild). */
export function httpStackBundleIsCurrent(): boolean {
  try {
    const bundle = statSync(new URL('../../server/http-stack.cjs', import.meta.url)).mtimeMs;
    statSync(new URL('../../server/http-stack.js', import.meta.url));
    return ['server.js', 'logging.js', 'app.js'].every(
      (name) => statSync(new URL(`../../server/${name}`, import.meta.url)).mtimeMs <= bundle,
    );
  } catch {
    return false;
  }
}

/**
 * The logger and server modules with fastify, pino and prom-client: from dist/server/http-stack.cjs when
 * `npm run build` bundled them (one file, run through V8's code cache: a fraction of the time the packages'
 * many modules take to load and compile), else (run from source, or no bundle) from the modules themselves.
 */
async function loadHttpStack(): Promise<HttpStack> {
  if (!import.meta.url.endsWith('.ts') && httpStackBundleIsCurrent()) {
    return import(new URL('../../server/http-stack.js', import.meta.url).href);
  }
  const [{ createLogger }, { startServer }] = await Promise.all([
    import('../../server/logging.js'),
    import('../../server/server.js'),
  ]);
  return { createLogger, startServer };
}

function envNumber(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

export const command: Command = {
  name: 'serve',
  summary: 'serve the chat page, /generate and the OpenAI-compatible API',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      'model-dir': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      workers: { type: 'string' },
      'queue-limit': { type: 'string' },
      'rate-limit': { type: 'string' },
      'api-key': { type: 'string', multiple: true },
      'cors-origin': { type: 'string', multiple: true },
    });
    const modelDir = path.resolve(values['model-dir'] ?? process.env.MODEL_DIR ?? 'model');
    const port =
      numberArg('port', values.port ?? envNumber('PORT'), { min: 0, max: 65535, integer: true }) ?? 8000;
    const host = values.host ?? '0.0.0.0';
    const workers =
      numberArg('workers', values.workers ?? envNumber('WORKERS'), { min: 1, max: 256, integer: true }) ??
      availableParallelism();
    const queueLimit =
      numberArg('queue-limit', values['queue-limit'], { min: 0, max: 100_000, integer: true }) ??
      DEFAULT_QUEUE_LIMIT;
    const rate =
      numberArg('rate-limit', values['rate-limit'] ?? envNumber('RATE_LIMIT'), { min: 0, integer: true }) ??
      DEFAULT_RATE_LIMIT.max;
    // Flags replace the environment's values; an empty list means none.
    const apiKeys = parseList(values['api-key'] ?? [process.env.API_KEY]);
    const corsOrigins = parseList(values['cors-origin'] ?? [process.env.CORS_ORIGIN]);
    const trustHops =
      numberArg('TRUST_PROXY_HOPS', envNumber('TRUST_PROXY_HOPS'), { min: 0, max: 10, integer: true }) ?? 1;

    // The first worker loads the model while this thread loads the HTTP stack. The other workers start once
    // the model is loaded: booting them meanwhile took the two cores from the load (spawn → /ready 348 → 301
    // ms, median of 15 interleaved spawns); /ready is 200 once the first can generate, and they join in ms.
    const loading = loadModelInWorker(modelDir);
    const { createLogger, startServer, codeCache, saveCodeCache, validators } = await loadHttpStack();
    const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'info' });
    const promptFile = process.env.SYSTEM_PROMPT_FILE ?? path.join(PACKAGE_ROOT, 'data', 'system_prompt.txt');
    const prompt = await systemPrompt(promptFile);
    logger.info(`system prompt from ${prompt.source}`);

    // The app is built while the model loads, but listens only once the model is loaded and checked: a broken
    // directory exits 1 instead of serving half a service. The workers start as soon as the model is there.
    const loaded = loading.model.catch((err: unknown) => {
      throw new Error(`cannot serve the model: ${err instanceof Error ? err.message : String(err)}`);
    });
    loaded.catch(() => {});
    const server = await startServer({
      port,
      host,
      model: loading,
      listenAfter: loaded,
      systemPrompt: prompt.text,
      workers,
      queueLimit,
      rateLimit: rate === 0 ? false : { max: rate, windowMs: 60_000 },
      logger,
      trustProxy: trustHops,
      apiKeys,
      corsOrigins,
      traceProject: process.env.GOOGLE_CLOUD_PROJECT || undefined,
      // Validators generated at build time: ajv does not generate and compile them again at every start.
      validators: validators ? { use: validators.exports } : undefined,
    });
    logger.info(`serving ${modelDir} on ${server.url} with ${workers} workers`);
    logger.info(
      `access: ${apiKeys.length > 0 ? `${apiKeys.length} API key${apiKeys.length === 1 ? '' : 's'} required` : 'no API key (open)'}; CORS ${corsOrigins.length > 0 ? corsOrigins.join(', ') : 'off'}`,
    );
    if (codeCache !== undefined && saveCodeCache) {
      // A start that compiled the bundle from source saves what it compiled, once it has served (best effort).
      if (codeCache === 'used') logger.info('HTTP stack: code cache used');
      else
        setTimeout(() => {
          void saveCodeCache().then((what) => logger.info(`HTTP stack: code cache ${codeCache}; ${what}`));
        }, 2000).unref();
    }
    const code = await server.closed;
    // Flush buffered log lines before the process ends.
    logger.flush();
    // Nothing should keep the process alive now; if something does, do not hang a container shutdown.
    setTimeout(() => process.exit(code), 2000).unref();
    return code;
  },
};
