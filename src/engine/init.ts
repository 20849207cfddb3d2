// GPT-2 initialisation as Hugging Face's GPT2PreTrainedModel._init_weights does it, drawn from the seeded Rng.
import type { GPTConfig } from './config.js';
import { parameterLayout } from './layout.js';
import type { Rng } from './rng.js';

/** HF's `initializer_range`. */
export const INIT_STD = 0.02;

/** Standard deviation of a tensor's initial values, or null for the constant ones (biases, LayerNorm). */
export function initStd(hfName: string, nLayer: number): number | null {
  if (/\.(ln_\d|ln_f)\.(weight|bias)$/.test(hfName) || hfName.endsWith('.bias')) return null;
  // Residual projections (attention and MLP c_proj) are scaled by 1/sqrt(2·n_layer), as in GPT-2's paper.
  if (/\.c_proj\.weight$/.test(hfName)) return INIT_STD / Math.sqrt(2 * nLayer);
  return INIT_STD; // wte, wpe, c_attn, c_fc (and an untied lm_head)
}

/**
 * Fills params (layout order) with a fresh GPT-2 initialisation: weights ~ N(0, std²) per initStd,
 * biases 0, LayerNorm weight 1 and bias 0. Tensors are drawn in layout order, so one seed gives one model.
 */
export function initGpt2Params(config: GPTConfig, params: Float32Array, rng: Rng): void {
  const layout = parameterLayout(config);
  if (params.length !== layout.total)
    throw new Error(`params has ${params.length} floats, the config needs ${layout.total}`);
  for (const t of layout.tensors) {
    const view = params.subarray(t.offset, t.offset + t.size);
    const std = initStd(t.hfName, config.nLayer);
    if (std === null) {
      view.fill(/\.(ln_\d|ln_f)\.weight$/.test(t.hfName) ? 1 : 0);
      continue;
    }
    for (let i = 0; i < view.length; i++) view[i] = rng.normal() * std;
  }
}
