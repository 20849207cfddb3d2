// GPT-2 hyper-parameters (the blueprint): validated once, then read everywhere as plain numbers.

export interface GPTConfig {
  /** V: vocabulary size. */
  vocabSize: number;
  /** maxT: number of learned positions (the context length). */
  nPositions: number;
  /** C: channels (embedding width). */
  nEmbd: number;
  /** L: number of transformer blocks. */
  nLayer: number;
  /** NH: attention heads; hs = C / NH. */
  nHead: number;
  /** LayerNorm epsilon (HF default 1e-5). */
  layerNormEpsilon: number;
  /** Whether lm_head shares the token embedding (HF `tie_word_embeddings`). */
  tieWordEmbeddings: boolean;
  bosTokenId: number;
  eosTokenId: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const positiveIntegers = ['vocabSize', 'nPositions', 'nEmbd', 'nLayer', 'nHead'] as const;

/** Checks every field and the relations between them; returns a frozen copy or throws ConfigError naming the field. */
export function validateConfig(config: GPTConfig): Readonly<GPTConfig> {
  for (const key of positiveIntegers) {
    const value = config[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      throw new ConfigError(`${key} must be a positive integer, got ${JSON.stringify(value)}`);
    }
  }
  if (config.nEmbd % config.nHead !== 0) {
    throw new ConfigError(`nEmbd (${config.nEmbd}) must be divisible by nHead (${config.nHead})`);
  }
  const eps = config.layerNormEpsilon;
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps)) {
    throw new ConfigError(`layerNormEpsilon must be a positive number, got ${JSON.stringify(eps)}`);
  }
  if (typeof config.tieWordEmbeddings !== 'boolean') {
    throw new ConfigError(
      `tieWordEmbeddings must be a boolean, got ${JSON.stringify(config.tieWordEmbeddings)}`,
    );
  }
  for (const key of ['bosTokenId', 'eosTokenId'] as const) {
    const id = config[key];
    if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) {
      throw new ConfigError(
        `${key} must be a token id in [0, ${config.vocabSize}), got ${JSON.stringify(id)}`,
      );
    }
  }
  // Sizes are multiplied together when buffers are allocated; keep them inside what a typed array can hold.
  const params = config.vocabSize * config.nEmbd + config.nPositions * config.nEmbd;
  if (params * config.nLayer > 2 ** 31)
    throw new ConfigError('model too large for this engine (over 2^31 parameters)');
  return Object.freeze({ ...config });
}

/** Per-head size hs = C / NH. */
export function headSize(config: GPTConfig): number {
  return config.nEmbd / config.nHead;
}
