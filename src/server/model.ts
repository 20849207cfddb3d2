// Loads the served model once in the main thread: weights and tokenizer tables into shared memory, sizes validated.
import { createHash } from 'node:crypto';
import type { GPTConfig } from '../engine/config.js';
import { parameterLayout } from '../engine/layout.js';
import { loadModelDir } from '../io/checkpoint.js';
import type { TokenizerTables } from '../tokenizer/gpt2-bpe.js';

export interface ServedModel {
  dir: string;
  config: Readonly<GPTConfig>;
  /** Float32Array over a SharedArrayBuffer: every worker reads the same copy. */
  params: Float32Array;
  /** The checked tokenizer in SharedArrayBuffers: every worker adopts it without parsing or copying. */
  tokenizer: TokenizerTables;
  /** Short hash of the config and weights size, reported as `system_fingerprint`. */
  fingerprint: string;
}

/** Reads a model directory and checks its sizes; a broken directory fails here with a message naming the problem. */
export async function loadServedModel(dir: string): Promise<ServedModel> {
  const loaded = await loadModelDir(dir, { requireTokenizer: true, tokenizer: 'tables', sharedParams: true });
  const tokenizer = loaded.tokenizerTables;
  if (!tokenizer)
    throw new Error(`${dir} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)`);
  const config = loaded.config;
  const params = loaded.params;
  const total = parameterLayout(config).total;
  if (params.length !== total)
    throw new Error(`${dir}: the weights hold ${params.length} floats, the config needs ${total}`);
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
  return { dir, config, params, tokenizer, fingerprint };
}
