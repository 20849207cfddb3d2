// Builds the Fastify app (plugins, routes, error shape) without listening: tests inject into it, server.ts listens.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { DEFAULT_QUEUE_LIMIT, DEFAULT_RATE_LIMIT, PACKAGE_ROOT, type RateLimitOptions } from './defaults.js';
import { ApiError } from './errors.js';
import { CloudLogController, traceChildLoggerFactory } from './logging.js';
import type { ServedModel } from './model.js';
import { apiKeyPlugin, corsPlugin } from './plugins/access.js';
import { clientErrorHandler, connectionsPlugin } from './plugins/connections.js';
import { errorHandlerPlugin, frameworkErrors, MAX_PARAM_LENGTH } from './plugins/error-handler.js';
import { generationPlugin } from './plugins/generation.js';
import { disconnectLogPlugin } from './plugins/logging.js';
import { metricsPlugin } from './plugins/metrics.js';
import { rateLimitPlugin } from './plugins/rate-limit.js';
import { securityPlugin } from './plugins/security.js';
import { generateRoutes } from './routes/generate.js';
import { healthRoutes } from './routes/health.js';
import { modelInfoRoutes } from './routes/model-info.js';
import { openaiRoutes } from './routes/openai.js';
import { tokenizeRoutes } from './routes/tokenize.js';
import { webRoutes } from './routes/web.js';
import {
  type PrecompiledValidators,
  precompiledValidatorFactory,
  recordingValidatorFactory,
} from './startup/validators.js';
import { loadModelInWorker, type ModelLoad } from './workers/model-load.js';

/** Request bodies above this are refused with 413 (a chat history of this size is far beyond the context). */
export const BODY_LIMIT = 256 * 1024;

/**
 * How long a client may take to send a request: its headers (a slow-headers client holds a connection for
 * nothing) and the whole of it (256 KiB in 30 s is 8.7 KiB/s). Both end in a 408 in the error shape.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
/**
 * An idle keep-alive connection stays open this long: longer than the 60 s idle timeout proxies commonly use, so
 * the proxy in front, not this server, closes it (otherwise a request it sends as the server closes fails).
 */
export const KEEP_ALIVE_TIMEOUT_MS = 72_000;
/** Request line and headers together, at most (Node's default, stated): more is a 431. */
export const MAX_HEADER_BYTES = 16 * 1024;

export interface AppOptions {
  /** Model directory to load; ignored when `model` is given. */
  modelDir?: string;
  /**
   * An already loaded model, its pending load (the app answers /health and /ready: 503 meanwhile), or its
   * load in a generation worker (loadModelInWorker), which then serves as the first worker.
   */
  model?: ServedModel | Promise<ServedModel> | ModelLoad;
  systemPrompt: string;
  /** Generation worker threads. */
  workers: number;
  /** Generations that may wait for a free worker before new ones get 503. */
  queueLimit?: number;
  /** Generations a worker advances together (default: defaultBatch of the model). */
  batch?: number;
  /** Bytes the KV caches of running generations may take (default: from the model's shape, see defaultKvBudget). */
  kvCacheBytes?: number;
  /** Per-client limit; false turns it off. */
  rateLimit?: RateLimitOptions | false;
  /** A pino logger (see createLogger), or false for none. */
  logger?: Logger | false;
  /**
   * Proxy hops in front whose X-Forwarded-For entries are trusted for the client address (Cloud Run's front end
   * is one); none by default: the client is the connection's peer.
   */
  trustProxy?: boolean | number;
  /** A connection whose client takes no byte of its answer for this long is closed (SEND_STALL_MS by default). */
  sendStallMs?: number;
  /** Unsent answer bytes all connections may hold together (UNSENT_BUDGET_BYTES by default). */
  unsentBudgetBytes?: number;
  /** Project whose traces log lines link to ($GOOGLE_CLOUD_PROJECT). */
  traceProject?: string;
  /** Folder holding web/ and dist/web/ (the package root by default). */
  webRoot?: string;
  /** Process metrics (memory, CPU, event loop) in /metrics. */
  processMetrics?: boolean;
  cancelGraceMs?: number;
  /** Keys accepted as `Authorization: Bearer <key>` (none: the API is open); the probes never need one. */
  apiKeys?: readonly string[];
  /** Origins allowed to call the API from a browser ('*': any); none: no CORS. */
  corsOrigins?: readonly string[];
  /** Check the route schemas against JSON Schema's meta-schema when the app is made ready (tests do). */
  checkSchemas?: boolean;
  /**
   * Request validators: `use` takes them from validators compiled at build time (precompiledValidators; a route
   * whose schema changed since is compiled as usual), `record` hands each compiled one's code to the build.
   * Without this, ajv compiles every validator when the app is made ready.
   */
  validators?: { use: PrecompiledValidators } | { record: (key: string, code: string) => void };
}

export interface AppSettings {
  systemPrompt: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    settings: AppSettings;
  }
}

export { DEFAULT_QUEUE_LIMIT, PACKAGE_ROOT } from './defaults.js';

/** A hop count n trusts the n nearest proxies: request.ip is the address the outermost trusted one saw. */
function trustHops(trust: boolean | number): boolean | ((address: string, hop: number) => boolean) {
  if (typeof trust === 'boolean') return trust;
  return (_address, hop) => hop < trust;
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** The parser refused well-formed JSON: it holds a key that could pollute prototypes. */
function forbiddenKey(): ApiError {
  return new ApiError(
    400,
    "The request body contains a forbidden key: '__proto__' and 'constructor.prototype' are not accepted.",
    'invalid_request_error',
    null,
    'forbidden_key',
  );
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  // Loaded in a generation worker (which then serves with it), as `serve` does: the engine and the file
  // readers stay out of this thread.
  const model = options.model ?? (options.modelDir ? loadModelInWorker(options.modelDir) : null);
  if (!model) throw new Error('buildApp needs modelDir or model');
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    logController: new CloudLogController(),
    childLoggerFactory: traceChildLoggerFactory(options.traceProject),
    bodyLimit: BODY_LIMIT,
    trustProxy: trustHops(options.trustProxy ?? 0),
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    // No inactivity timeout on the socket: a request may wait long in the queue without a byte moving. Clients
    // that stop reading are closed by the connections plugin instead.
    connectionTimeout: 0,
    http: {
      headersTimeout: HEADERS_TIMEOUT_MS,
      maxHeaderSize: MAX_HEADER_BYTES,
      // Node checks the two request timeouts this often (30 s by default, which let a slow client outlive them).
      connectionsCheckingInterval: 1000,
    },
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Routing errors (a bad % escape, an over-long path segment) and requests Node cannot parse are answered in
    // the error shape, not in Fastify's or Node's own words.
    frameworkErrors,
    clientErrorHandler,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // JSON types are checked as sent: "5" is not a number here.
    // Our schemas are fixed, so they are checked against JSON Schema's meta-schema by the tests, not at every start.
    ajv: {
      // Strict: a field a schema does not list is refused by name (Fastify's default silently drops it).
      customOptions: {
        coerceTypes: false,
        removeAdditional: false,
        // Fields that take several shapes are unions whose branch if/then picks by the first item or type.
        allowUnionTypes: true,
        strictTuples: false,
        allErrors: false,
        validateSchema: options.checkSchemas === true,
      },
    },
    // While closing, requests are still answered by the routes (draining: 503 shutting_down in the error shape);
    // server.ts closes the connections themselves.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    ...(options.validators
      ? {
          schemaController: {
            compilersFactory: {
              buildValidator:
                'use' in options.validators
                  ? precompiledValidatorFactory(options.validators.use)
                  : recordingValidatorFactory(options.validators.record),
            },
          },
        }
      : {}),
  }) as unknown as FastifyInstance;
  app.decorate('settings', { systemPrompt: options.systemPrompt });
  // JSON only: a text/plain body is refused with 415 instead of reaching the schemas as a string.
  app.removeContentTypeParser('text/plain');
  // Fastify's JSON parser reports a `__proto__` or `constructor.prototype` key as invalid JSON; say what it is.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = String(body);
    parseJson(request, text, (err, value) => {
      if (err && isJson(text)) done(forbiddenKey(), undefined);
      else done(err, value);
    });
  });

  await app.register(errorHandlerPlugin);
  await app.register(connectionsPlugin, {
    sendStallMs: options.sendStallMs,
    unsentBudgetBytes: options.unsentBudgetBytes,
  });
  await app.register(disconnectLogPlugin);
  await app.register(metricsPlugin, { processMetrics: options.processMetrics });
  await app.register(securityPlugin);
  await app.register(corsPlugin, { corsOrigins: options.corsOrigins });
  const rateLimit = options.rateLimit ?? DEFAULT_RATE_LIMIT;
  if (rateLimit) await app.register(rateLimitPlugin, rateLimit);
  await app.register(apiKeyPlugin, { apiKeys: options.apiKeys });
  await app.register(generationPlugin, {
    model,
    workers: options.workers,
    queueLimit: options.queueLimit ?? DEFAULT_QUEUE_LIMIT,
    batch: options.batch,
    kvCacheBytes: options.kvCacheBytes,
    cancelGraceMs: options.cancelGraceMs,
  });

  await app.register(healthRoutes);
  await app.register(generateRoutes);
  await app.register(openaiRoutes);
  await app.register(tokenizeRoutes);
  await app.register(modelInfoRoutes);
  await app.register(webRoutes, { root: options.webRoot ?? PACKAGE_ROOT });
  return app;
}
