// The options `serve` and `start` share: one definition of their flags, environment defaults and usage lines.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { GcsFetchError, parseGcsUri } from '../io/gcs-fetch.js';
import { DEFAULT_QUEUE_LIMIT, DEFAULT_RATE_LIMIT, PACKAGE_ROOT } from '../server/defaults.js';
import { parseList } from '../server/keys.js';
import type { ServiceOptions } from '../server/startup/serve.js';
import { BATCH_MIN_LAYER_PARAMS, DEFAULT_BATCH } from '../server/workers/kv-budget.js';
import { numberArg, parseCommandArgs, UsageError } from './command.js';

export const serveFlags = {
  'model-dir': { type: 'string' },
  'model-file': { type: 'string' },
  quantize: { type: 'string' },
  'model-uri': { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  workers: { type: 'string' },
  'queue-limit': { type: 'string' },
  'max-batch': { type: 'string' },
  'kv-cache-mib': { type: 'string' },
  'rate-limit': { type: 'string' },
  'api-key': { type: 'string', multiple: true },
  'cors-origin': { type: 'string', multiple: true },
  'trust-proxy-hops': { type: 'string' },
} as const;

export const serveFlagsUsage = `  --model-dir D        model directory, or a GPT-2 .gguf file (default $MODEL_DIR or ./model)
  --model-file F       a GPT-2 .gguf file (F32, F16, BF16 or Q8_0) to serve instead of a directory
  --quantize q8_0      hold the float32 matrices as int8 Q8_0 blocks (default $QUANTIZE: none; a Q8_0 GGUF,
                       or a directory stored as int8 by create-model --quantize q8_0, is served as Q8_0 without it)
  --model-uri gs://BUCKET/PREFIX
                       fetch the model directory from Cloud Storage at start (each object checked against
                       its CRC32C/MD5) into a temporary directory, then serve it; /health answers and /ready
                       is 503 "loading" meanwhile; a failed fetch ends the process with exit code 1
                       (default $MODEL_URI; --model-dir, given as a flag, takes precedence over $MODEL_URI)
  --port N             port (default $PORT or 8000)
  --host H             address to bind (default 0.0.0.0)
  --workers N          generation worker threads (default $WORKERS or one per CPU core)
  --queue-limit N      generations that may wait for a worker before 503 (default ${DEFAULT_QUEUE_LIMIT})
  --max-batch N        generations a worker advances together, one pass over the weights per step for all
                       (default $MAX_BATCH, else ${DEFAULT_BATCH}, or 1 for a model whose layers hold under
                       ${BATCH_MIN_LAYER_PARAMS} parameters: its step is its LM head; 1: one at a time)
  --kv-cache-mib M     memory the KV caches of running generations may take; beyond it requests queue
                       (default $KV_CACHE_MIB, else ${DEFAULT_BATCH} full-context sequences per worker, at most 512 MiB
                       unless one per worker needs more)
  --rate-limit N       requests per client per minute, 0 = off (default $RATE_LIMIT or ${DEFAULT_RATE_LIMIT.max})
  --api-key K          require "Authorization: Bearer K" on every route but /health, /ready and the chat
                       page's files; repeat it (or comma-separate) for several keys (default $API_KEY: none)
  --cors-origin O      let browsers on origin O call the API (CORS, preflights answered); repeat it or
                       comma-separate; '*' for any origin (default $CORS_ORIGIN: none)
  --trust-proxy-hops N take the client's address from the last N entries of X-Forwarded-For, written by
                       the N proxies in front (default $TRUST_PROXY_HOPS; else 1 on Cloud Run, where
                       $K_SERVICE is set, and 0 elsewhere: the connection's peer is the client)

environment: $SYSTEM_PROMPT_FILE (default data/system_prompt.txt in the package), $LOG_LEVEL (info),
$GOOGLE_CLOUD_PROJECT (links log lines to traces)`;

function envValue(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

/**
 * Where the model comes from: the flags first (--model-dir and --model-uri together are refused), then
 * $MODEL_URI, then $MODEL_DIR (the image sets it), then ./model.
 */
function modelLocation(
  dirFlag: string | undefined,
  uriFlag: string | undefined,
): Pick<ServiceOptions, 'modelDir' | 'modelUri'> {
  if (dirFlag !== undefined && uriFlag !== undefined)
    throw new UsageError('--model-dir and --model-uri name two models: give one of them');
  const uri = uriFlag ?? (dirFlag === undefined ? envValue('MODEL_URI') : undefined);
  if (uri !== undefined) {
    const from = uriFlag !== undefined ? '--model-uri' : 'MODEL_URI';
    if (!uri.startsWith('gs://'))
      throw new UsageError(`${from} must be a gs://BUCKET/PREFIX URI, got ${JSON.stringify(uri)}`);
    try {
      parseGcsUri(uri);
    } catch (err) {
      if (err instanceof GcsFetchError) throw new UsageError(`${from}: ${err.message}`);
      throw err;
    }
    return { modelDir: null, modelUri: uri };
  }
  return { modelDir: path.resolve(dirFlag ?? process.env.MODEL_DIR ?? 'model'), modelUri: null };
}

/**
 * How many proxy hops to trust for the client's address, and why: the flag, else $TRUST_PROXY_HOPS, else one on
 * Cloud Run (its front end; Cloud Run sets $K_SERVICE), else none. Trusting a proxy that is not there would let
 * any client name its own address (and so escape the rate limit) by sending X-Forwarded-For.
 */
export function trustProxyRule(flag: string | undefined): { hops: number; source: string } {
  if (flag !== undefined)
    return {
      hops: numberArg('trust-proxy-hops', flag, { min: 0, max: 10, integer: true })!,
      source: '--trust-proxy-hops',
    };
  const env = envValue('TRUST_PROXY_HOPS');
  if (env !== undefined)
    return {
      hops: numberArg('trust-proxy-hops', env, { min: 0, max: 10, integer: true })!,
      source: '$TRUST_PROXY_HOPS',
    };
  if (envValue('K_SERVICE') !== undefined)
    return { hops: 1, source: "Cloud Run's front end ($K_SERVICE is set)" };
  return { hops: 0, source: 'no proxy configured' };
}

/** Parses the serve flags (UsageError on a bad one) and fills in the environment's and built-in defaults. */
export function parseServeArgs(argv: string[]): ServiceOptions {
  const { values } = parseCommandArgs(argv, serveFlags);
  const rate =
    numberArg('rate-limit', values['rate-limit'] ?? envValue('RATE_LIMIT'), { min: 0, integer: true }) ??
    DEFAULT_RATE_LIMIT.max;
  const file = values['model-file'];
  if (file !== undefined && values['model-dir'] !== undefined)
    throw new UsageError('give --model-dir or --model-file, not both');
  if (file !== undefined && !file.toLowerCase().endsWith('.gguf'))
    throw new UsageError(`--model-file must name a .gguf file, got "${file}"`);
  const quantize = values.quantize ?? envValue('QUANTIZE');
  const kvMib = numberArg('kv-cache-mib', values['kv-cache-mib'] ?? envValue('KV_CACHE_MIB'), { min: 0 });
  if (quantize !== undefined && quantize !== 'q8_0')
    throw new UsageError(`--quantize takes q8_0, got "${quantize}"`);
  return {
    ...modelLocation(file ?? values['model-dir'], values['model-uri']),
    ...(quantize ? { quantize } : {}),
    port: numberArg('port', values.port ?? envValue('PORT'), { min: 0, max: 65535, integer: true }) ?? 8000,
    host: values.host ?? '0.0.0.0',
    workers:
      numberArg('workers', values.workers ?? envValue('WORKERS'), { min: 1, max: 256, integer: true }) ??
      availableParallelism(),
    queueLimit:
      numberArg('queue-limit', values['queue-limit'], { min: 0, max: 100_000, integer: true }) ??
      DEFAULT_QUEUE_LIMIT,
    batch: numberArg('max-batch', values['max-batch'] ?? envValue('MAX_BATCH'), {
      min: 1,
      max: 64,
      integer: true,
    }),
    ...(kvMib === undefined ? {} : { kvCacheBytes: Math.round(kvMib * 2 ** 20) }),
    rateLimit: rate === 0 ? false : { max: rate, windowMs: DEFAULT_RATE_LIMIT.windowMs },
    // Flags replace the environment's values; an empty list means none.
    apiKeys: parseList(values['api-key'] ?? [process.env.API_KEY]),
    corsOrigins: parseList(values['cors-origin'] ?? [process.env.CORS_ORIGIN]),
    trustProxy: trustProxyRule(values['trust-proxy-hops']),
    logLevel: process.env.LOG_LEVEL ?? 'info',
    systemPromptFile: process.env.SYSTEM_PROMPT_FILE ?? path.join(PACKAGE_ROOT, 'data', 'system_prompt.txt'),
    traceProject: process.env.GOOGLE_CLOUD_PROJECT || undefined,
  };
}
