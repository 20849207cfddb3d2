// The KV-cache memory a generation reserves: sized in the main thread from its request (before the prompt is tokenized), allocated in the worker from its tokens, both rounded to the same few sizes.
import type { GPTConfig } from '../../engine/config.js';
import type { JobRequest } from './protocol.js';

/** Sequences a worker advances together by default (one pass over the weights per step for all of them). */
export const DEFAULT_BATCH = 8;

/**
 * Layer parameters below which a worker runs one generation at a time by default. A batch shares the read of
 * the layers' weights between its sequences; a model whose layers are tiny (the original project's 16-wide
 * configuration) spends its step in the LM head, which a batch does not share, and pays the batch's per-step
 * bookkeeping instead (docs/performance.md, "Serving GPT-2 small").
 */
export const BATCH_MIN_LAYER_PARAMS = 32_768;

/** The default batch for `config`: DEFAULT_BATCH, or 1 where the layers are too small to share (see above). */
export function defaultBatch(config: Pick<GPTConfig, 'nLayer' | 'nEmbd'>): number {
  const layerParams = config.nLayer * 12 * config.nEmbd * config.nEmbd;
  return layerParams >= BATCH_MIN_LAYER_PARAMS ? DEFAULT_BATCH : 1;
}

/** The default budget stops at this unless one full-context sequence per worker needs more. */
const DEFAULT_BUDGET_CAP = 512 * 1024 * 1024;

/** Bytes one position of a KV cache takes: a key and a value of n_embd floats in every layer. */
export function kvBytesPerPosition(config: Pick<GPTConfig, 'nLayer' | 'nEmbd'>): number {
  return config.nLayer * 2 * config.nEmbd * Float32Array.BYTES_PER_ELEMENT;
}

/**
 * The positions a cache is allocated with for a sequence of `positions`: rounded up to one of at most eight
 * sizes per context, so a worker reuses its caches across requests instead of allocating new sizes forever.
 */
export function cachePositions(positions: number, context: number): number {
  const step = Math.max(16, Math.ceil(context / 8));
  return Math.min(context, Math.max(step, Math.ceil(positions / step) * step));
}

/**
 * The most positions `request` can take, known before tokenization: a byte-level BPE gives a text at most one
 * token per UTF-8 byte, and generation stops at max tokens or at the context. Tasks (tokenize) take none.
 */
export function requestPositions(request: JobRequest, context: number): number {
  if (request.task === 'tokenize' || request.task === 'detokenize') return 0;
  // A malformed request (no text prompt) reserves the whole context; its worker reports what is wrong.
  if (request.maxNewTokens === null || (!request.promptIds && typeof request.prompt !== 'string'))
    return context;
  const prompt = request.promptIds?.length ?? Buffer.byteLength(request.prompt, 'utf8');
  return Math.min(context, prompt + request.maxNewTokens);
}

/** Bytes of KV cache the pool reserves for `request` while it runs (what its worker allocates at most). */
export function requestKvBytes(
  request: JobRequest,
  config: Pick<GPTConfig, 'nLayer' | 'nEmbd' | 'nPositions'>,
): number {
  const positions = requestPositions(request, config.nPositions);
  if (positions === 0) return 0;
  return cachePositions(positions, config.nPositions) * kvBytesPerPosition(config);
}

/**
 * The default budget for the KV caches of running generations: a full batch of full-context sequences on every
 * worker, capped at 512 MiB, but never less than one full-context sequence per worker.
 */
export function defaultKvBudget(
  config: Pick<GPTConfig, 'nLayer' | 'nEmbd' | 'nPositions'>,
  workers: number,
  batch: number,
): number {
  const full = config.nPositions * kvBytesPerPosition(config);
  return Math.max(workers * full, Math.min(workers * batch * full, DEFAULT_BUDGET_CAP));
}
