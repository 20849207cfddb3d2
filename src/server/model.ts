// Loads the served model once in the main thread: weights into shared memory, tokenizer checked, sizes validated.
import { createHash } from 'node:crypto';
import type { GPTConfig } from '../engine/config.js';
import { InferenceWeights } from '../engine/inference.js';
import { loadModelDir } from '../io/checkpoint.js';
import type { TokenizerData } from '../tokenizer/gpt2-bpe.js';

export interface ServedModel {
  dir: string;
  config: Readonly<GPTConfig>;
  /** Float32Array over a SharedArrayBuffer: every worker reads the same copy. */
  params: Float32Array;
  tokenizerData: TokenizerData;
  /** Short hash of the config and weights size, reported as `system_fingerprint`. */
  fingerprint: string;
}

/** Reads a model directory and checks its sizes; a broken directory fails here with a message naming the problem. */
export async function loadServedModel(dir: string): Promise<ServedModel> {
  const loaded = await loadModelDir(dir, { requireTokenizer: true });
  if (!loaded.tokenizerData)
    throw new Error(`${dir} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)`);
  const params = new Float32Array(new SharedArrayBuffer(loaded.params.byteLength));
  params.set(loaded.params);
  const weights = new InferenceWeights(loaded.config, params);
  // Workers build the tokenizer (and report a broken one); here only the sizes must agree.
  const tokens = Object.keys(loaded.tokenizerData.vocab).length;
  if (tokens > weights.config.vocabSize) {
    throw new Error(
      `${dir}: the tokenizer has ${tokens} tokens but the model's vocabulary holds ${weights.config.vocabSize}`,
    );
  }
  const fingerprint = `fp_${createHash('sha256')
    .update(JSON.stringify(weights.config))
    .update(String(params.length))
    .digest('hex')
    .slice(0, 10)}`;
  return { dir, config: weights.config, params, tokenizerData: loaded.tokenizerData, fingerprint };
}
