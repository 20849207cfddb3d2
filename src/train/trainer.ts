// The training loop: seeded init, batches per preset (windows or the original's padded lines), AdamW with
// warmup + cosine and gradient clipping, progress callbacks. Pure computation: the caller does all I/O.
import { AdamW, clipGradNorm, cosineSchedule } from '../engine/adamw.js';
import { type GPTConfig, validateConfig } from '../engine/config.js';
import { initGpt2Params } from '../engine/init.js';
import { parameterLayout } from '../engine/layout.js';
import { GPT2 } from '../engine/model.js';
import { Rng } from '../engine/rng.js';
import { type Batch, epochBatches, lineStarts, windowBatch } from './batches.js';
import { documentStream, type Encoder, lineSamples, vocabularyOf } from './corpus.js';
import { DataParallel, sharedCopy } from './data-parallel.js';
import type { HyperParams } from './presets.js';

/** Bumped whenever a change to the trainer changes the model it produces (part of the cache key). */
export const TRAINER_VERSION = '2';

export interface TrainProgress {
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  tokensPerS: number;
  elapsedS: number;
  etaS: number;
}

export interface TrainInput {
  config: GPTConfig;
  hyper: HyperParams;
  seed: number;
  text: string;
  systemPrompt: string | null;
  tokenizer: Encoder;
  onProgress?: (p: TrainProgress) => void;
  /** Milliseconds clock (performance.now by default). */
  now?: () => number;
  /**
   * With the restricted vocabulary, train a compact copy over the corpus's tokens (default true); false
   * trains the full-size model with a restricted head: the slower reference the compact path is tested against.
   */
  compactVocab?: boolean;
  /** Start from these parameters (a pretrained model, fine-tuned) instead of GPT-2's random init. */
  initialParams?: Float32Array;
}

export interface TrainResult {
  params: Float32Array;
  /** Mean training loss of every step's batch (over the restricted vocabulary when that is on). */
  losses: number[];
  steps: number;
  /** Counted target tokens over the whole run. */
  tokensSeen: number;
  wallTimeS: number;
  tokensPerS: number;
  /** Tokens in the training stream (windows) or in all samples (lines). */
  corpusTokens: number;
  /** Size of the restricted training vocabulary, or null when the full softmax was used. */
  trainingVocabSize: number | null;
}

/** Independent generators for init, data order and dropout, all derived from one seed. */
function seededRngs(seed: number) {
  return { init: new Rng(seed), data: new Rng(seed + 0x1000193), dropout: new Rng(seed + 0x2000327) };
}

/** A freshly initialised model's parameters (what `create-model` without --train writes). */
export function initialParams(config: GPTConfig, seed: number): Float32Array {
  const params = new Float32Array(parameterLayout(validateConfig(config)).total);
  initGpt2Params(config, params, seededRngs(seed).init);
  return params;
}

/** 1 for weight matrices and embeddings (decayed), 0 for biases and LayerNorm parameters. */
export function matrixDecayMask(config: GPTConfig): Uint8Array {
  const layout = parameterLayout(config);
  const mask = new Uint8Array(layout.total);
  for (const t of layout.tensors) if (t.shape.length === 2) mask.fill(1, t.offset, t.offset + t.size);
  return mask;
}

/** Checks hyper-parameters, naming the first bad one. */
export function validateHyper(h: HyperParams): void {
  const positive: Array<keyof HyperParams> = ['batchSize', 'seqLen', 'lr'];
  for (const k of positive) {
    const v = h[k] as number;
    if (!(typeof v === 'number' && v > 0 && Number.isFinite(v)))
      throw new RangeError(`${k} must be > 0, got ${v}`);
  }
  const nonNegative: Array<keyof HyperParams> = [
    'steps',
    'epochs',
    'warmup',
    'weightDecay',
    'gradClip',
    'eps',
  ];
  for (const k of nonNegative) {
    const v = h[k] as number;
    if (!(typeof v === 'number' && v >= 0 && Number.isFinite(v)))
      throw new RangeError(`${k} must be >= 0, got ${v}`);
  }
  if (h.data === 'windows' && !(h.steps >= 1)) throw new RangeError('steps must be >= 1');
  if (h.data === 'lines' && !(h.epochs >= 1)) throw new RangeError('epochs must be >= 1');
  for (const k of ['beta1', 'beta2'] as const) {
    if (!(h[k] >= 0 && h[k] < 1)) throw new RangeError(`${k} must be in [0, 1), got ${h[k]}`);
  }
  if (!(h.minLrRatio >= 0 && h.minLrRatio <= 1)) throw new RangeError(`minLrRatio must be in [0, 1]`);
  if (h.replicas !== undefined && !(h.replicas === 1 || h.replicas === 2))
    throw new RangeError(`replicas must be 1 or 2, got ${h.replicas}`);
}

function checkedVocab(vocab: Int32Array, config: GPTConfig): Int32Array {
  for (let i = 0; i < vocab.length; i++) {
    if (vocab[i] >= config.vocabSize)
      throw new RangeError(`token id ${vocab[i]} does not fit the model's vocabulary of ${config.vocabSize}`);
  }
  return vocab;
}

/**
 * The restricted-vocabulary training model: a copy of the model whose token table holds only the corpus's
 * K tokens (ids remapped to 0..K−1), with the softmax's rest column standing for the other V − K. Only
 * those rows get gradients, so the optimizer, clipping and zeroing run over K·C + the blocks instead of
 * V·C floats; the other rows only decay, applied once at the end.
 */
interface CompactSetup {
  config: GPTConfig;
  ids: Int32Array; // [K] full-vocabulary ids, ascending
  index: Int32Array; // [V] full id → compact id (−1 outside)
  eos: number; // compact id of EOS
}

/** The compact set-up when training over a restricted vocabulary with a tied head, else null. */
function compactSetup(config: GPTConfig, vocab: Int32Array, restrict: boolean): CompactSetup | null {
  const V = config.vocabSize;
  if (!restrict || !config.tieWordEmbeddings || vocab.length >= V) return null;
  const index = new Int32Array(V).fill(-1);
  vocab.forEach((id, k) => {
    index[id] = k;
  });
  const eos = index[config.eosTokenId];
  const bos = index[config.bosTokenId];
  const compactConfig = {
    ...config,
    vocabSize: vocab.length,
    eosTokenId: eos,
    bosTokenId: bos < 0 ? eos : bos,
  };
  return { config: compactConfig, ids: vocab, index, eos };
}

/** The compact model's parameters: the corpus's token rows, then everything after the token table. */
function gatherCompact(params: Float32Array, config: GPTConfig, s: CompactSetup): Float32Array {
  const C = config.nEmbd;
  const out = new Float32Array(parameterLayout(s.config).total);
  s.ids.forEach((id, k) => {
    out.set(params.subarray(id * C, (id + 1) * C), k * C);
  });
  out.set(params.subarray(config.vocabSize * C), s.ids.length * C);
  return out;
}

/** Writes the trained compact parameters back; rows outside it get the run's accumulated weight decay. */
function scatterCompact(
  params: Float32Array,
  compact: Float32Array,
  config: GPTConfig,
  s: CompactSetup,
  outsideScale: number,
): void {
  const C = config.nEmbd;
  if (outsideScale !== 1) for (let i = 0; i < config.vocabSize * C; i++) params[i] *= outsideScale;
  s.ids.forEach((id, k) => {
    params.set(compact.subarray(k * C, (k + 1) * C), id * C);
  });
  params.set(compact.subarray(s.ids.length * C), config.vocabSize * C);
}

/** Trains a model (from scratch, or on from `initialParams`) and returns its parameters and the run's figures. */
export function train(input: TrainInput): TrainResult {
  const { hyper: h, tokenizer, seed } = input;
  const config = validateConfig(input.config);
  validateHyper(h);
  if (h.seqLen > config.nPositions)
    throw new RangeError(`seqLen ${h.seqLen} exceeds the model's ${config.nPositions} positions`);
  const rngs = seededRngs(seed);
  const params = new Float32Array(parameterLayout(config).total);
  if (input.initialParams) {
    if (input.initialParams.length !== params.length)
      throw new RangeError(
        `initialParams has ${input.initialParams.length} floats, the config needs ${params.length}`,
      );
    params.set(input.initialParams);
  } else initGpt2Params(config, params, rngs.init);

  // Data: either a token stream for random windows or the original's line samples in shuffled epochs.
  let nextBatch: () => Batch;
  let setup: CompactSetup | null = null;
  let totalSteps: number;
  let corpusTokens: number;
  let vocab: Int32Array;
  const eos = config.eosTokenId;
  if (h.data === 'windows') {
    const stream = documentStream(
      input.text,
      tokenizer,
      h.systemPromptInDialogues ? input.systemPrompt : null,
    );
    if (stream.length < 2) throw new Error('the training data has no text to learn from');
    corpusTokens = stream.length;
    vocab = checkedVocab(vocabularyOf([stream], [eos]), config);
    const compact = compactSetup(config, vocab, h.restrictVocab && input.compactVocab !== false);
    const ids = compact ? stream.map((id) => compact.index[id]) : stream;
    totalSteps = h.steps;
    const newline = tokenizer.encode('\n');
    const starts =
      h.windowStart === 'line' && newline.length === 1
        ? lineStarts(ids, h.seqLen, compact ? compact.index[newline[0]] : newline[0], compact?.eos ?? eos)
        : undefined;
    nextBatch = () => windowBatch(ids, h.batchSize, h.seqLen, rngs.data, starts);
    setup = compact;
  } else {
    const samples = lineSamples(input.text, tokenizer, h.seqLen);
    if (samples.length === 0) throw new Error('the training data has no non-empty lines');
    corpusTokens = samples.reduce((n, s) => n + s.length, 0);
    vocab = checkedVocab(vocabularyOf(samples, [eos]), config);
    const compact = compactSetup(config, vocab, h.restrictVocab && input.compactVocab !== false);
    const ids = compact ? samples.map((s) => s.map((id) => compact.index[id])) : samples;
    totalSteps = Math.ceil(samples.length / h.batchSize) * h.epochs;
    const batches = epochBatches(ids, h.batchSize, h.epochs, compact?.eos ?? eos, rngs.data);
    nextBatch = () => batches.next().value as Batch;
    setup = compact;
  }
  // Two replicas share the parameters through shared memory; they need dropout off (one mask stream).
  const { embd, attn, resid } = h.dropout;
  const parallel = (h.replicas ?? 1) > 1 && embd === 0 && attn === 0 && resid === 0 && h.batchSize >= 2;
  const first = setup ? gatherCompact(params, config, setup) : params;
  const model = new GPT2(setup ? setup.config : config, parallel ? sharedCopy(first) : first);
  const head = {
    restTokens: setup ? config.vocabSize - vocab.length : 0,
    subsetIds: !setup && h.restrictVocab ? vocab : null,
    subsetRest: true,
  };
  if (head.subsetIds) model.setTrainingVocab(head.subsetIds, { rest: head.subsetRest });
  else model.setRestColumn(head.restTokens);
  model.setDropout(h.dropout, rngs.dropout);
  model.training = true;
  const replicas = parallel ? new DataParallel(model, head) : null;
  try {
    return trainLoop(input, h, model, nextBatch, totalSteps, replicas, (outsideScale) => {
      if (setup) scatterCompact(params, model.params, config, setup, outsideScale);
      else if (model.params !== params) params.set(model.params);
      return { params, corpusTokens, trainingVocabSize: h.restrictVocab ? vocab.length : null };
    });
  } finally {
    replicas?.close();
  }
}

/** The optimisation loop proper; `finish` writes the parameters back and names the run's fixed figures. */
function trainLoop(
  input: TrainInput,
  h: HyperParams,
  model: GPT2,
  nextBatch: () => Batch,
  totalSteps: number,
  replicas: DataParallel | null,
  finish: (outsideScale: number) => Pick<TrainResult, 'params' | 'corpusTokens' | 'trainingVocabSize'>,
): TrainResult {
  const now = input.now ?? (() => performance.now());

  const opt = new AdamW(model.params.length, {
    lr: h.lr,
    beta1: h.beta1,
    beta2: h.beta2,
    eps: h.eps,
    weightDecay: h.weightDecay,
  });
  const decayMask = h.decayMatricesOnly ? matrixDecayMask(model.config) : undefined;
  // Token-table rows outside the compact model see only weight decay (no gradient, so no Adam step).
  let outsideScale = 1;
  const outsideDecays = h.weightDecay !== 0;
  const losses: number[] = [];
  let tokensSeen = 0;
  const start = now();
  for (let step = 0; step < totalSteps; step++) {
    const batch = nextBatch();
    const lr =
      h.schedule === 'cosine' ? cosineSchedule(step, h.lr, h.warmup, totalSteps, h.lr * h.minLrRatio) : h.lr;
    let loss: number;
    if (replicas) loss = replicas.step(batch);
    else {
      model.zeroGrad();
      loss = model.forward(batch.inputs, batch.B, batch.T, batch.targets);
      if (Number.isFinite(loss)) model.backward();
    }
    if (!Number.isFinite(loss)) throw new Error(`training diverged: loss ${loss} at step ${step + 1}`);
    if (h.gradClip > 0) clipGradNorm(model.grads!, h.gradClip);
    opt.step(model.params, model.grads!, lr, decayMask);
    if (outsideDecays) outsideScale *= 1 - lr * h.weightDecay;
    losses.push(loss);
    tokensSeen += batch.tokens;
    if (input.onProgress) {
      const elapsedS = (now() - start) / 1000;
      const rate = elapsedS > 0 ? tokensSeen / elapsedS : 0;
      input.onProgress({
        step: step + 1,
        totalSteps,
        loss,
        lr,
        tokensPerS: rate,
        elapsedS,
        etaS: ((totalSteps - step - 1) * elapsedS) / (step + 1),
      });
    }
  }
  const fixed = finish(outsideDecays ? outsideScale : 1);
  const wallTimeS = (now() - start) / 1000;
  return {
    ...fixed,
    losses,
    steps: totalSteps,
    tokensSeen,
    wallTimeS,
    tokensPerS: wallTimeS > 0 ? tokensSeen / wallTimeS : 0,
  };
}
