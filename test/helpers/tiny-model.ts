// Writes a tiny random-init GPT-2 with the full GPT-2 tokenizer into a temp folder, for server and CLI tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GPTConfig } from '../../src/engine/config.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { saveModelDir } from '../../src/io/checkpoint.js';
import { defaultTokenizerData } from '../../src/io/tokenizer-files.js';

export interface TinyModel {
  dir: string;
  config: GPTConfig;
  /** Removes the temp folder. */
  remove(): void;
}

/** n_embd 16, 1 layer, 1 head, 128 positions, GPT-2's 50 257 tokens: about 0.8 M parameters, ~1 ms a token. */
export function tinyConfig(nPositions = 128, nEmbd = 16): GPTConfig {
  return {
    vocabSize: 50257,
    nPositions,
    nEmbd,
    nLayer: 1,
    nHead: 1,
    layerNormEpsilon: 1e-5,
    tieWordEmbeddings: true,
    bosTokenId: 50256,
    eosTokenId: 50256,
  };
}

/** Every parameter drawn from N(0, 0.02²) with a seeded RNG, so the same seed writes the same model. */
export async function createTinyModel(
  options: { seed?: number; nPositions?: number; nEmbd?: number; extraFiles?: Record<string, string> } = {},
): Promise<TinyModel> {
  const config = tinyConfig(options.nPositions, options.nEmbd);
  const rng = new Rng(options.seed ?? 1234);
  const params = new Float32Array(parameterLayout(config).total);
  for (let i = 0; i < params.length; i++) params[i] = rng.normal() * 0.02;
  const root = mkdtempSync(join(tmpdir(), 'tiny-llm-model-'));
  const dir = join(root, 'model');
  await saveModelDir(dir, {
    config,
    params,
    tokenizerData: await defaultTokenizerData(),
    extraFiles: options.extraFiles,
  });
  return { dir, config, remove: () => rmSync(root, { recursive: true, force: true }) };
}
