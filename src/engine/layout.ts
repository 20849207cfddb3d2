// The one parameter layout table: HF tensor names, shapes, Conv1D orientation and offsets in the flat buffer.
// Sizes, views, gradients, safetensors names and GGUF names all derive from this table.
import type { GPTConfig } from './config.js';

export interface TensorSpec {
  /** Hugging Face state-dict name, e.g. `transformer.h.0.attn.c_attn.weight`. */
  hfName: string;
  /** llama.cpp GGUF name, e.g. `blk.0.attn_qkv.weight`. */
  ggufName: string;
  /** Shape as HF stores it (Conv1D weights are [in, out]). */
  shape: number[];
  /** Offset (in floats) inside the flat parameter buffer. */
  offset: number;
  /** Number of floats. */
  size: number;
  /** True for HF Conv1D weights: stored [in, out]; GGUF and torch Linear want [out, in]. */
  conv1d: boolean;
}

export interface ParameterLayout {
  tensors: TensorSpec[];
  byName: Map<string, TensorSpec>;
  /** Total number of floats in the parameter buffer. */
  total: number;
}

/** Token embedding's HF name (the tied LM head's weights). */
export const HF_TOKEN_EMBEDDING = 'transformer.wte.weight';
/** LM head's HF name: stored only when untied, though some tied checkpoints store a copy. */
export const HF_LM_HEAD = 'lm_head.weight';
const HF_PREFIX = 'transformer.';
/** GPT-2 attention buffers (causal mask, masked fill value) older checkpoints store; not parameters. */
const HF_BUFFER = /^transformer\.h\.\d+\.attn\.(bias|masked_bias)$/;

/**
 * The layout-table name of a stored tensor: `GPT2Model` checkpoints (the Hub's `gpt2`, `distilgpt2`) store
 * the body's tensors without the `transformer.` prefix that `GPT2LMHeadModel` adds.
 */
export function canonicalHfName(stored: string): string {
  return stored.startsWith(HF_PREFIX) || stored === HF_LM_HEAD ? stored : `${HF_PREFIX}${stored}`;
}

/** True for a stored tensor that is a buffer, not a parameter (takes a canonical name). */
export function isHfBuffer(canonical: string): boolean {
  return HF_BUFFER.test(canonical);
}

/** Builds the table for a config; the buffer order is the order of this list. */
export function parameterLayout(config: GPTConfig): ParameterLayout {
  const { vocabSize: V, nPositions: maxT, nEmbd: C, nLayer: L } = config;
  const tensors: TensorSpec[] = [];
  let offset = 0;
  const add = (hfName: string, ggufName: string, shape: number[], conv1d = false) => {
    const size = shape.reduce((a, b) => a * b, 1);
    tensors.push({ hfName, ggufName, shape, offset, size, conv1d });
    offset += size;
  };
  add(HF_TOKEN_EMBEDDING, 'token_embd.weight', [V, C]);
  add('transformer.wpe.weight', 'position_embd.weight', [maxT, C]);
  for (let l = 0; l < L; l++) {
    const h = `transformer.h.${l}`;
    const b = `blk.${l}`;
    add(`${h}.ln_1.weight`, `${b}.attn_norm.weight`, [C]);
    add(`${h}.ln_1.bias`, `${b}.attn_norm.bias`, [C]);
    add(`${h}.attn.c_attn.weight`, `${b}.attn_qkv.weight`, [C, 3 * C], true);
    add(`${h}.attn.c_attn.bias`, `${b}.attn_qkv.bias`, [3 * C]);
    add(`${h}.attn.c_proj.weight`, `${b}.attn_output.weight`, [C, C], true);
    add(`${h}.attn.c_proj.bias`, `${b}.attn_output.bias`, [C]);
    add(`${h}.ln_2.weight`, `${b}.ffn_norm.weight`, [C]);
    add(`${h}.ln_2.bias`, `${b}.ffn_norm.bias`, [C]);
    add(`${h}.mlp.c_fc.weight`, `${b}.ffn_up.weight`, [C, 4 * C], true);
    add(`${h}.mlp.c_fc.bias`, `${b}.ffn_up.bias`, [4 * C]);
    add(`${h}.mlp.c_proj.weight`, `${b}.ffn_down.weight`, [4 * C, C], true);
    add(`${h}.mlp.c_proj.bias`, `${b}.ffn_down.bias`, [C]);
  }
  add('transformer.ln_f.weight', 'output_norm.weight', [C]);
  add('transformer.ln_f.bias', 'output_norm.bias', [C]);
  if (!config.tieWordEmbeddings) add(HF_LM_HEAD, 'output.weight', [V, C]);
  return { tensors, byName: new Map(tensors.map((t) => [t.hfName, t])), total: offset };
}

/** Named views of one layer's tensors inside a flat buffer (parameters, gradients or optimizer state). */
export interface LayerViews {
  ln1w: Float32Array; // [C]
  ln1b: Float32Array; // [C]
  qkvw: Float32Array; // [C, 3C]
  qkvb: Float32Array; // [3C]
  attprojw: Float32Array; // [C, C]
  attprojb: Float32Array; // [C]
  ln2w: Float32Array; // [C]
  ln2b: Float32Array; // [C]
  fcw: Float32Array; // [C, 4C]
  fcb: Float32Array; // [4C]
  fcprojw: Float32Array; // [4C, C]
  fcprojb: Float32Array; // [C]
}

export interface ModelViews {
  wte: Float32Array; // [V, C]
  wpe: Float32Array; // [maxT, C]
  layers: LayerViews[];
  lnfw: Float32Array; // [C]
  lnfb: Float32Array; // [C]
  /** LM head weight [V, C]: the same memory as wte when tied. */
  lmHead: Float32Array;
}

/** Slices a flat buffer into named views following the layout table (no copies). */
export function modelViews(layout: ParameterLayout, buffer: Float32Array, nLayer: number): ModelViews {
  const view = (name: string) => {
    const spec = layout.byName.get(name);
    if (!spec) throw new Error(`layout has no tensor ${name}`);
    return buffer.subarray(spec.offset, spec.offset + spec.size);
  };
  const layers: LayerViews[] = [];
  for (let l = 0; l < nLayer; l++) {
    const h = `transformer.h.${l}`;
    layers.push({
      ln1w: view(`${h}.ln_1.weight`),
      ln1b: view(`${h}.ln_1.bias`),
      qkvw: view(`${h}.attn.c_attn.weight`),
      qkvb: view(`${h}.attn.c_attn.bias`),
      attprojw: view(`${h}.attn.c_proj.weight`),
      attprojb: view(`${h}.attn.c_proj.bias`),
      ln2w: view(`${h}.ln_2.weight`),
      ln2b: view(`${h}.ln_2.bias`),
      fcw: view(`${h}.mlp.c_fc.weight`),
      fcb: view(`${h}.mlp.c_fc.bias`),
      fcprojw: view(`${h}.mlp.c_proj.weight`),
      fcprojb: view(`${h}.mlp.c_proj.bias`),
    });
  }
  const wte = view(HF_TOKEN_EMBEDDING);
  return {
    wte,
    wpe: view('transformer.wpe.weight'),
    layers,
    lnfw: view('transformer.ln_f.weight'),
    lnfb: view('transformer.ln_f.bias'),
    lmHead: layout.byName.has(HF_LM_HEAD) ? view(HF_LM_HEAD) : wte,
  };
}
