// Training presets: `seed` is the original project's recipe, `default` the model we ship (chosen by measurement).
import type { GPTConfig } from '../engine/config.js';
import type { DropoutRates } from '../engine/model.js';

/** Everything about a training run except the model's shape and the data. */
export interface HyperParams {
  /** `lines`: each line a sample, padded batches, epochs (the original); `windows`: random windows, steps. */
  data: 'lines' | 'windows';
  /** Optimizer steps (windows); for `lines` the epochs decide and this is derived. */
  steps: number;
  epochs: number;
  batchSize: number;
  /** Window length (windows) or truncation length (lines). */
  seqLen: number;
  lr: number;
  /** `cosine`: linear warmup then cosine decay to minLrRatio·lr; `constant`: lr throughout. */
  schedule: 'cosine' | 'constant';
  warmup: number;
  minLrRatio: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Decay only weight matrices and embeddings, not biases and LayerNorm parameters. */
  decayMatricesOnly: boolean;
  /** Global gradient-norm clip (0 = off). */
  gradClip: number;
  dropout: DropoutRates;
  /** Softmax over the corpus's own token ids (plus EOS) during training; eval always uses the full vocabulary. */
  restrictVocab: boolean;
  /** Where windows start: anywhere, or only at the beginning of a line (windows only). */
  windowStart: 'any' | 'line';
  /** Put the system prompt in front of dialogue blocks (windows only). */
  systemPromptInDialogues: boolean;
  /**
   * Threads sharing each batch (data parallel, 1 or 2): each computes the gradient of part of the rows and
   * the parts are combined in a fixed order, so the result depends on this number (float rounding) but
   * not on the machine. Used only with dropout off; omitted = 1.
   */
  replicas?: number;
}

export interface Preset {
  name: 'seed' | 'default';
  config: GPTConfig;
  hyper: HyperParams;
}

const GPT2_VOCAB = 50257;
const EOS = 50256;

function gpt2Config(nEmbd: number, nLayer: number, nHead: number, nPositions: number): GPTConfig {
  return {
    vocabSize: GPT2_VOCAB,
    nPositions,
    nEmbd,
    nLayer,
    nHead,
    layerNormEpsilon: 1e-5,
    tieWordEmbeddings: true,
    bosTokenId: EOS,
    eosTokenId: EOS,
  };
}

/** The original: n_embd 16, 1 layer, 1 head, 256 positions; 2 epochs, batch 2, AdamW lr 1e-3 eps 1e-6, dropout 0.1. */
export const SEED_PRESET: Preset = {
  name: 'seed',
  config: gpt2Config(16, 1, 1, 256),
  hyper: {
    data: 'lines',
    steps: 0,
    epochs: 2,
    batchSize: 2,
    seqLen: 64,
    lr: 1e-3,
    schedule: 'constant',
    warmup: 0,
    minLrRatio: 1,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-6,
    weightDecay: 0,
    decayMatricesOnly: false,
    gradClip: 0,
    dropout: { embd: 0.1, attn: 0.1, resid: 0.1 },
    restrictVocab: false,
    windowStart: 'any',
    systemPromptInDialogues: false,
    replicas: 1,
  },
};

/**
 * What we ship: 2 layers × 64 dim × 4 heads, batches 8×64 starting at line starts, two data-parallel
 * replicas, lr 1e-2 with warmup + cosine, the softmax restricted to the corpus's tokens + a rest column.
 * Sized to reach a low loss on data/training_data.txt within the image build's time budget; the learning-rate
 * choice and its figures are in docs/performance.md (Training).
 */
export const DEFAULT_PRESET: Preset = {
  name: 'default',
  config: gpt2Config(64, 2, 4, 256),
  hyper: {
    data: 'windows',
    steps: 800,
    epochs: 0,
    batchSize: 8,
    seqLen: 64,
    lr: 1e-2,
    schedule: 'cosine',
    warmup: 40,
    minLrRatio: 0.1,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    decayMatricesOnly: true,
    gradClip: 1,
    dropout: { embd: 0, attn: 0, resid: 0 },
    restrictVocab: true,
    windowStart: 'line',
    systemPromptInDialogues: true,
    replicas: 2,
  },
};

export const PRESETS = { seed: SEED_PRESET, default: DEFAULT_PRESET } as const;

/**
 * Fine-tuning a pretrained model on the corpus (`create-model --from-pretrained SOURCE --train`): the
 * default preset's data (windows from line starts, system prompt before dialogues) with a learning rate
 * for weights that already know English, and the full softmax: a pretrained model's other tokens have
 * real logits, which the restricted head's rest column (logits taken as 0) would misrepresent.
 */
export const FINETUNE_HYPER: HyperParams = {
  ...DEFAULT_PRESET.hyper,
  steps: 200,
  batchSize: 8,
  seqLen: 128,
  lr: 1e-4,
  warmup: 20,
  minLrRatio: 0.1,
  restrictVocab: false,
};
