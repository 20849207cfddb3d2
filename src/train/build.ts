// What `create-model` does: decide reuse (model dir, then cache) by a content key, else train or init,
// evaluate, apply the quality gate, write the model dir atomically with its report, and fill the cache.
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { GPTConfig } from '../engine/config.js';
import { parameterLayout } from '../engine/layout.js';
import { GPT2 } from '../engine/model.js';
import { writeDirAtomic, writeFileAtomic } from '../io/atomic.js';
import { saveModelDir } from '../io/checkpoint.js';
import { pathExists, readDirFiles, readOptionalTextFile } from '../io/dataset.js';
import { openModelCache } from '../io/model-cache.js';
import type { TokenizerData } from '../io/tokenizer-files.js';
import { Gpt2Tokenizer } from '../tokenizer/gpt2-bpe.js';
import { splitLines, vocabularyOf } from './corpus.js';
import { type EvalResult, evaluateLines } from './evaluate.js';
import type { HyperParams } from './presets.js';
import { lossCurveSvg, modelCard } from './report.js';
import { initialParams, TRAINER_VERSION, type TrainProgress, train } from './trainer.js';

export interface BuildOptions {
  preset: string;
  config: GPTConfig;
  hyper: HyperParams;
  seed: number;
  train: boolean;
  forceTrain: boolean;
  modelDir: string;
  /** Corpus text and where it came from (needed with train or maxLoss). */
  data: { file: string; text: string } | null;
  systemPrompt: string | null;
  tokenizerData: TokenizerData;
  cacheUri: string | null;
  maxLoss: number | null;
  /** How the model dir stores the weights: float32 model.safetensors (the default), or int8 model.q8_0.gguf. */
  weights?: 'f32' | 'q8_0';
  log: (line: string) => void;
  onProgress?: (p: TrainProgress) => void;
  /** The model-dir writer (tests swap in one that fails part-way). */
  save?: typeof saveModelDir;
}

export interface BuildOutcome {
  /** How the model dir came to be. */
  source: 'reused' | 'cache' | 'trained' | 'initialised';
  key: string;
  evalLoss: number | null;
}

/** A failure of the quality gate: nothing was written. */
export class QualityGateError extends Error {
  override name = 'QualityGateError';
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Key of everything that decides the model's bytes: config, hyper-parameters, corpus, seed, trainer version. */
export function modelKey(
  o: Pick<
    BuildOptions,
    'preset' | 'config' | 'hyper' | 'seed' | 'train' | 'data' | 'systemPrompt' | 'weights'
  >,
) {
  return sha256Hex(
    JSON.stringify({
      trainerVersion: TRAINER_VERSION,
      mode: o.train ? 'trained' : 'initialised',
      preset: o.preset,
      config: o.config,
      hyper: o.train ? o.hyper : null,
      seed: o.seed,
      corpusSha256: o.train && o.data ? sha256Hex(o.data.text) : null,
      systemPromptSha256:
        o.train && o.hyper.systemPromptInDialogues && o.systemPrompt !== null
          ? sha256Hex(o.systemPrompt)
          : null,
      // Only int8 storage is named, so the keys of float32 models (and the caches holding them) stay as they were.
      ...(o.weights === 'q8_0' ? { weights: 'q8_0' } : {}),
    }),
  );
}

/** training.json of an existing model dir, or null when absent or unreadable. */
async function storedReport(dir: string): Promise<Record<string, unknown> | null> {
  try {
    const text = await readOptionalTextFile(path.join(dir, 'training.json'), 'training report');
    const value = text === null ? null : JSON.parse(text);
    return value && typeof value === 'object' && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

function storedEvalLoss(report: Record<string, unknown> | null): number | null {
  const v = report?.eval_loss;
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function gate(maxLoss: number | null, loss: number | null, what: string): void {
  if (maxLoss === null) return;
  if (loss === null) throw new QualityGateError(`--max-loss ${maxLoss}: ${what} has no eval loss to check`);
  if (!(loss <= maxLoss)) {
    throw new QualityGateError(
      `quality gate failed: eval loss ${loss.toFixed(4)} nats/token is above --max-loss ${maxLoss} (${what})`,
    );
  }
}

export async function buildModel(o: BuildOptions): Promise<BuildOutcome> {
  const key = modelKey(o);
  const save = o.save ?? saveModelDir;

  // 1. The model dir itself, when it was made from exactly these inputs.
  if (!o.forceTrain && (await pathExists(o.modelDir))) {
    const report = await storedReport(o.modelDir);
    if (report?.cache_key === key) {
      gate(o.maxLoss, storedEvalLoss(report), `existing model in ${o.modelDir}`);
      o.log(
        `model in ${o.modelDir} was built from the same config, corpus and seed: reusing it (--force-train rebuilds)`,
      );
      return { source: 'reused', key, evalLoss: storedEvalLoss(report) };
    }
    o.log(
      report
        ? `model in ${o.modelDir} was built from a different config or corpus: rebuilding`
        : `${o.modelDir} has no training report to compare: rebuilding`,
    );
  }

  // 2. The cache.
  const cache = o.cacheUri ? await openModelCache(o.cacheUri) : null;
  if (cache && !o.forceTrain) {
    const files = await cache.get(key);
    const report = files?.['training.json'] ? parseReport(files['training.json']) : null;
    if (files && report?.cache_key === key) {
      gate(o.maxLoss, storedEvalLoss(report), `cached model ${key.slice(0, 12)}`);
      await writeDirAtomic(o.modelDir, async (tmp) => {
        for (const [name, data] of Object.entries(files)) await writeFileAtomic(path.join(tmp, name), data);
      });
      o.log(`cache hit ${cache.uri} ${key.slice(0, 12)}: model written to ${o.modelDir}`);
      return { source: 'cache', key, evalLoss: storedEvalLoss(report) };
    }
    o.log(`cache miss ${cache.uri} ${key.slice(0, 12)}`);
  }

  // 3. Train (or initialise) and evaluate.
  const tokenizer = new Gpt2Tokenizer(o.tokenizerData);
  const started = new Date();
  let params: Float32Array;
  let result: ReturnType<typeof train> | null = null;
  if (o.train) {
    if (!o.data) throw new Error('training needs a data file');
    o.log(
      `training preset ${o.preset}: n_embd ${o.config.nEmbd}, ${o.config.nLayer} layers, ${o.config.nHead} heads, ` +
        `${parameterLayout(o.config).total} parameters, seed ${o.seed}`,
    );
    result = train({
      config: o.config,
      hyper: o.hyper,
      seed: o.seed,
      text: o.data.text,
      systemPrompt: o.systemPrompt,
      tokenizer,
      onProgress: o.onProgress,
    });
    params = result.params;
  } else {
    params = initialParams(o.config, o.seed);
  }
  let evaluation: EvalResult | null = null;
  if (o.data && (o.train || o.maxLoss !== null)) {
    const model = new GPT2(o.config, params);
    const subset = result?.trainingVocabSize
      ? vocabularyOf(
          [tokenizer.encode(o.data.text), o.systemPrompt ? tokenizer.encode(o.systemPrompt) : []],
          [o.config.eosTokenId],
        )
      : undefined;
    const t0 = performance.now();
    evaluation = evaluateLines(model, tokenizer, o.data.text, subset);
    o.log(
      `eval on ${o.data.file}: ${evaluation.loss.toFixed(4)} nats/token over ${evaluation.tokens} tokens of ` +
        `${evaluation.lines} lines${evaluation.restrictedLoss !== undefined ? ` (restricted softmax: ${evaluation.restrictedLoss.toFixed(4)})` : ''}` +
        ` in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  }
  gate(o.maxLoss, evaluation?.loss ?? null, 'this run; nothing was written');

  // 4. Write the model dir (atomically) with its report, then fill the cache.
  const parameters = parameterLayout(o.config).total;
  const tail = result ? result.losses.slice(-Math.min(20, result.losses.length)) : [];
  const finalTrainLoss = tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : null;
  const report = {
    cache_key: key,
    trainer_version: TRAINER_VERSION,
    preset: o.preset,
    trained: o.train,
    seed: o.seed,
    config: o.config,
    hyper_parameters: o.hyper,
    parameters,
    data_file: o.data?.file ?? null,
    corpus_sha256: o.data ? sha256Hex(o.data.text) : null,
    corpus_lines: o.data ? splitLines(o.data.text).length : null,
    system_prompt_sha256: o.systemPrompt !== null ? sha256Hex(o.systemPrompt) : null,
    training_tokens: result?.corpusTokens ?? null,
    training_vocab_size: result?.trainingVocabSize ?? null,
    steps: result?.steps ?? 0,
    tokens_seen: result?.tokensSeen ?? 0,
    wall_time_s: result ? round(result.wallTimeS, 3) : 0,
    tokens_per_s: result ? Math.round(result.tokensPerS) : 0,
    final_train_loss: finalTrainLoss,
    final_loss: evaluation?.loss ?? finalTrainLoss,
    eval_loss: evaluation?.loss ?? null,
    eval_restricted_loss: evaluation?.restrictedLoss ?? null,
    eval_tokens: evaluation?.tokens ?? null,
    weights_format: o.weights ?? 'f32',
    losses: result ? result.losses.map((l) => round(l, 5)) : [],
    started_at: started.toISOString(),
  };
  const extraFiles: Record<string, string> = {
    'training.json': `${JSON.stringify(report, null, 2)}\n`,
    'README.md': modelCard({
      preset: o.preset,
      config: o.config,
      hyper: o.hyper,
      parameters,
      trained: o.train,
      seed: o.seed,
      dataFile: o.data ? path.basename(o.data.file) : '',
      corpusSha256: report.corpus_sha256 ?? '',
      corpusLines: report.corpus_lines ?? 0,
      corpusTokens: report.training_tokens ?? 0,
      evalLoss: report.eval_loss,
      evalRestrictedLoss: report.eval_restricted_loss,
      trainingVocabSize: report.training_vocab_size,
      steps: report.steps,
      wallTimeS: report.wall_time_s,
      tokensPerS: report.tokens_per_s,
      finalTrainLoss,
      trainerVersion: TRAINER_VERSION,
      weightsFormat: o.weights ?? 'f32',
    }),
  };
  if (result) {
    extraFiles['loss-curve.svg'] = lossCurveSvg(result.losses, {
      title: `tiny-llm ${o.preset}: training loss per step`,
      evalLoss: evaluation?.loss,
    });
  }
  await save(o.modelDir, {
    config: o.config,
    params,
    tokenizerData: o.tokenizerData,
    extraFiles,
    weights: o.weights ?? 'f32',
  });
  o.log(`model written to ${o.modelDir}`);
  if (cache) {
    try {
      await cache.put(key, await readDirFiles(o.modelDir));
      o.log(`stored in cache ${cache.uri} ${key.slice(0, 12)}`);
    } catch (err) {
      o.log(`warning: could not store the model in the cache: ${(err as Error).message}`);
    }
  }
  return { source: o.train ? 'trained' : 'initialised', key, evalLoss: evaluation?.loss ?? null };
}

function parseReport(bytes: Uint8Array): Record<string, unknown> | null {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes));
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
