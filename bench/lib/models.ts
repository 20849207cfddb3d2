// Finds and loads the models the benchmark runs on: the golden seed-tiny weights and the default preset.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { GPTConfig } from '../../src/engine/config.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import type { TokenizerData } from '../../src/io/tokenizer-files.js';

export const repoRoot = join(import.meta.dirname, '..', '..');
export const sharedDir = join(repoRoot, '..', 'shared');
export const seedTinyDir = join(sharedDir, 'golden', 'seed-tiny');
export const defaultModelDir = join(repoRoot, 'model');

export interface BenchModel {
  name: string;
  dir: string;
  config: GPTConfig;
  params: Float32Array;
  tokenizerData: TokenizerData | null;
}

/** A model to benchmark, or the reason it is skipped. */
export type Located = { ok: true; name: string; dir: string } | { ok: false; name: string; why: string };

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

export async function loadBenchModel(name: string, dir: string): Promise<BenchModel> {
  const m = await loadModelDir(dir, { requireTokenizer: false });
  return { name, dir, config: m.config, params: m.params, tokenizerData: m.tokenizerData };
}
