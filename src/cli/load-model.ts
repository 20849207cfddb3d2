// Loads a model directory for inference: weights, config and (when present) the tokenizer.
import type { GPTConfig } from '../engine/config.js';
import { InferenceWeights } from '../engine/inference.js';
import { loadModelDir } from '../io/checkpoint.js';
import { Gpt2Tokenizer } from '../tokenizer/gpt2-bpe.js';

export interface LoadedModel {
  config: Readonly<GPTConfig>;
  weights: InferenceWeights;
  tokenizer: Gpt2Tokenizer | null;
}

export async function loadInferenceModel(
  dir: string,
  options: { requireTokenizer: boolean },
): Promise<LoadedModel> {
  const loaded = await loadModelDir(dir, { requireTokenizer: options.requireTokenizer });
  const weights = new InferenceWeights(loaded.config, loaded.params);
  const tokenizer = loaded.tokenizerData ? new Gpt2Tokenizer(loaded.tokenizerData) : null;
  return { config: weights.config, weights, tokenizer };
}
