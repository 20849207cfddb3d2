// Loads the served model once: weights, tokenizer tables and the packed LM head into shared memory, sizes validated.
import { createHash, randomUUID } from 'node:crypto';
import type { GPTConfig } from '../engine/config.js';
import { InferenceWeights, type SharedHead } from '../engine/inference.js';
import { loadModelDir } from '../io/checkpoint.js';
import { type ModelOrigin, readModelOrigin } from '../io/model-report.js';
import type { TokenizerTables } from '../tokenizer/gpt2-bpe.js';

export interface ServedModel {
  dir: string;
  config: Readonly<GPTConfig>;
  /** Float32Array over a SharedArrayBuffer: every worker reads the same copy. */
  params: Float32Array;
  /** The checked tokenizer in SharedArrayBuffers: every worker adopts it without parsing or copying. */
  tokenizer: TokenizerTables;
  /** The LM head packed once into a shared WebAssembly memory that every worker computes in (null: pure JS). */
  head: SharedHead | null;
  /** Short hash of the config and weights size, reported as `system_fingerprint`. */
  fingerprint: string;
  /** Unique to this load: the worker that loaded it knows its own copy by this id (see WorkerInit.modelId). */
  id: string;
  /** Where the tokenizer tables came from (tokenizer-tables.bin, or which files were scanned and why), for the log. */
  tokenizerSource: string;
  /** Where the model came from (source.json, or the preset it was trained with), as /api/model reports it. */
  source: ModelOrigin;
}

/** Reads a model directory and checks its sizes; a broken directory fails here with a message naming the problem. */
export async function loadServedModel(dir: string): Promise<ServedModel> {
  const origin = readModelOrigin(dir);
  const loaded = await loadModelDir(dir, { requireTokenizer: true, tokenizer: 'tables', sharedParams: true });
  const tokenizer = loaded.tokenizerTables;
  if (!tokenizer)
    throw new Error(`${dir} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)`);
  const config = loaded.config;
  const params = loaded.params;
  // Checks the sizes and packs the LM head once, for every worker (never freed: they read it while serving).
  const weights = new InferenceWeights(config, params, { head: 'share' });
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new Error(
      `${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary holds ${config.vocabSize}`,
    );
  }
  const fingerprint = `fp_${createHash('sha256')
    .update(JSON.stringify(config))
    .update(String(params.length))
    .digest('hex')
    .slice(0, 10)}`;
  return {
    dir,
    config,
    params,
    tokenizer,
    head: weights.sharedHead,
    fingerprint,
    id: randomUUID(),
    tokenizerSource: loaded.tokenizerSource ?? 'tokenizer files',
    source: await origin,
  };
}
