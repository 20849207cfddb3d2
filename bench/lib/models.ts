// Finds and loads the models the benchmark runs on: the golden seed-tiny weights, the default preset, a model
// directory or GGUF file given with --model, and a GPT-2-small-shaped random model it writes itself.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { GPTConfig } from '../../src/engine/config.js';
import type { ModelSource } from '../../src/engine/inference.js';
import { initGpt2Params } from '../../src/engine/init.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { loadModelDir, saveModelDir } from '../../src/io/checkpoint.js';
import { loadGgufModel } from '../../src/io/gguf.js';
import { defaultTokenizerData, type TokenizerData } from '../../src/io/tokenizer-files.js';

export const repoRoot = join(import.meta.dirname, '..', '..');
export const sharedDir = join(repoRoot, '..', 'shared');
export const seedTinyDir = join(sharedDir, 'golden', 'seed-tiny');
export const defaultModelDir = join(repoRoot, 'model');
/** Where --model gpt2-small-shape is written once (bench/results is not committed). */
export const gpt2SmallShapeDir = join(repoRoot, 'bench', 'results', 'gpt2-small-shape');

export interface BenchModel {
  name: string;
  /** The model directory, or the GGUF file. */
  dir: string;
  config: GPTConfig;
  /** The float32 parameters (null for a GGUF file whose matrices are Q8_0). */
  params: Float32Array | null;
  /** The tensors as the engine takes them (Q8_0 kept), for a GGUF file. */
  source: ModelSource | null;
  tokenizerData: TokenizerData | null;
  /** The GGUF file itself when the model is one (llama.cpp then runs it as it is). */
  gguf: string | null;
}

/** A model to benchmark, or the reason it is skipped. */
export type Located = { ok: true; name: string; dir: string } | { ok: false; name: string; why: string };

/** The models a plain `npm run bench` decodes: the original's seed model and the default preset. */
export function locateModels(): Located[] {
  const seed: Located = existsSync(join(seedTinyDir, 'model.safetensors'))
    ? { ok: true, name: 'seed', dir: seedTinyDir }
    : {
        ok: false,
        name: 'seed',
        why: `${seedTinyDir} is absent (the shared golden data is not beside this checkout)`,
      };
  const def: Located = existsSync(join(defaultModelDir, 'config.json'))
    ? { ok: true, name: 'default', dir: defaultModelDir }
    : {
        ok: false,
        name: 'default',
        why: './model is absent: build it with `tiny-llm create-model --train --preset default`',
      };
  return [seed, def];
}

/** GPT-2 small's shape: 12 layers, 768 wide, 12 heads, context 1024, GPT-2's vocabulary (124 M parameters). */
export const GPT2_SMALL_SHAPE: GPTConfig = {
  vocabSize: 50257,
  nPositions: 1024,
  nEmbd: 768,
  nLayer: 12,
  nHead: 12,
  layerNormEpsilon: 1e-5,
  tieWordEmbeddings: true,
  bosTokenId: 50256,
  eosTokenId: 50256,
};

/**
 * The model a --model argument names: 'seed', 'default', 'gpt2-small-shape' (written on first use, GPT-2
 * initialisation with seed 1234, as `tiny-llm create-model --n-embd 768 --n-layer 12 --n-head 12
 * --n-positions 1024` writes one), a model directory or a .gguf file.
 */
export async function resolveModel(spec: string): Promise<Located> {
  if (spec === 'seed' || spec === 'default') {
    const found = locateModels().find((m) => m.name === spec);
    if (!found) throw new Error(`no model ${spec}`);
    return found;
  }
  if (spec === 'gpt2-small-shape') {
    if (!existsSync(join(gpt2SmallShapeDir, 'model.safetensors'))) {
      console.log(`writing a GPT-2-small-shaped random model to ${gpt2SmallShapeDir}`);
      const params = new Float32Array(parameterLayout(GPT2_SMALL_SHAPE).total);
      initGpt2Params(GPT2_SMALL_SHAPE, params, new Rng(1234));
      await saveModelDir(gpt2SmallShapeDir, {
        config: GPT2_SMALL_SHAPE,
        params,
        tokenizerData: await defaultTokenizerData(),
      });
    }
    return { ok: true, name: 'gpt2-small-shape', dir: gpt2SmallShapeDir };
  }
  if (!existsSync(spec)) return { ok: false, name: spec, why: `${spec} does not exist` };
  const base = spec.replace(/\/+$/, '').split('/').pop() ?? spec;
  return { ok: true, name: base, dir: spec };
}

export async function loadBenchModel(name: string, dir: string): Promise<BenchModel> {
  if (statSync(dir).isFile()) {
    const g = await loadGgufModel(dir);
    return {
      name,
      dir,
      config: g.config,
      params: g.params,
      source: g.params ? null : g.source,
      tokenizerData: g.tokenizerData,
      gguf: dir,
    };
  }
  const m = await loadModelDir(dir, { requireTokenizer: false });
  return {
    name,
    dir,
    config: m.config,
    params: m.params,
    source: null,
    tokenizerData: m.tokenizerData,
    gguf: null,
  };
}

/** Parameters of a model (for choosing decode lengths and labels). */
export function parameterCount(config: GPTConfig): number {
  return parameterLayout(config).total;
}
