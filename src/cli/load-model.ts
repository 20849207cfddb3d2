// Loads a model for inference: a model directory (Hugging Face layout) or a GPT-2 GGUF file, with its tokenizer.
import { statSync } from 'node:fs';
import type { GPTConfig } from '../engine/config.js';
import { InferenceWeights } from '../engine/inference.js';
import { wasmArena } from '../engine/wasm/runtime.js';
import { loadModelDir, loadQ8ModelDir, modelDirWeights, openModelDir } from '../io/checkpoint.js';
import { loadGgufModel } from '../io/gguf.js';
import { Gpt2Tokenizer } from '../tokenizer/gpt2-bpe.js';

export interface LoadedModel {
  config: Readonly<GPTConfig>;
  weights: InferenceWeights;
  tokenizer: Gpt2Tokenizer | null;
}

/** Whether `path` names a GGUF file (rather than a model directory). */
export function isGgufFile(path: string): boolean {
  try {
    return statSync(path).isFile() && path.toLowerCase().endsWith('.gguf');
  } catch {
    return false;
  }
}

/**
 * A model directory (float32 model.safetensors, or model.q8_0.gguf kept as Q8_0) or a .gguf file (whose Q8_0
 * matrices stay Q8_0); `quantize` 'q8_0' quantises float32 matrices at load.
 */
export async function loadInferenceModel(
  path: string,
  options: { requireTokenizer: boolean; quantize?: 'q8_0' },
): Promise<LoadedModel> {
  if (isGgufFile(path)) {
    const g = await loadGgufModel(path);
    const weights = new InferenceWeights(g.config, g.params ?? g.source, { quantize: options.quantize });
    return { config: weights.config, weights, tokenizer: new Gpt2Tokenizer(g.tokenizerData) };
  }
  if ((await modelDirWeights(path)) === 'q8_0') {
    const loaded = await loadQ8ModelDir(path, { requireTokenizer: options.requireTokenizer });
    const weights = new InferenceWeights(loaded.config, loaded.source);
    const tokenizer = loaded.tokenizerData ? new Gpt2Tokenizer(loaded.tokenizerData) : null;
    return { config: weights.config, weights, tokenizer };
  }
  const arena = wasmArena();
  if (options.quantize && arena) {
    // Each matrix read a piece at a time and quantised: the float32 model is never held whole.
    const opened = await openModelDir(path, { requireTokenizer: options.requireTokenizer });
    try {
      const weights = new InferenceWeights(opened.config, opened.source, { quantize: options.quantize });
      const tokenizer = opened.tokenizerData ? new Gpt2Tokenizer(opened.tokenizerData) : null;
      return { config: weights.config, weights, tokenizer };
    } finally {
      opened.close();
    }
  }
  // Read straight into the kernels' memory, where the weights are computed in (no second copy); a one-shot
  // command keeps them for as long as it runs.
  const loaded = await loadModelDir(path, {
    requireTokenizer: options.requireTokenizer,
    paramsInto: arena ? (floats) => arena.f32(arena.alloc(floats * 4), floats) : undefined,
  });
  const weights = new InferenceWeights(loaded.config, loaded.params, { quantize: options.quantize });
  const tokenizer = loaded.tokenizerData ? new Gpt2Tokenizer(loaded.tokenizerData) : null;
  return { config: weights.config, weights, tokenizer };
}
