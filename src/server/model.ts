// Loads the served model once: weights, tokenizer tables and the packed LM head into shared memory, sizes validated.
import { createHash, randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import type { GPTConfig } from '../engine/config.js';
import { InferenceWeights, type ModelSource, type SharedHead } from '../engine/inference.js';
import { parameterLayout } from '../engine/layout.js';
import { wasmArena } from '../engine/wasm/runtime.js';
import { loadModelDir, loadQ8ModelDir, modelDirWeights, openModelDir } from '../io/checkpoint.js';
import { loadGgufModel } from '../io/gguf.js';
import { type ModelOrigin, readModelOrigin } from '../io/model-report.js';
import { buildTokenizerTables, type TokenizerTables } from '../tokenizer/gpt2-bpe.js';

/** How the served model's matrices are stored in memory: float32, or GGUF's Q8_0 (int8 blocks, f16 scales). */
export type ServedFormat = 'f32' | 'q8_0';

export interface ServedModel {
  /** The model directory or .gguf file it was loaded from. */
  dir: string;
  config: Readonly<GPTConfig>;
  /** Parameters of the model (the layout's count, whatever their format). */
  parameters: number;
  /** The matrices' format in memory. */
  format: ServedFormat;
  /** The file's kind: a Hugging Face style directory, or a GGUF file. */
  container: 'directory' | 'gguf';
  /**
   * Float32Array over a SharedArrayBuffer, only on the pure-JS path (no WebAssembly kernels); otherwise null:
   * the weights live once in the shared WebAssembly memory that `head` names.
   */
  params: Float32Array | null;
  /** The checked tokenizer in SharedArrayBuffers: every worker adopts it without parsing or copying. */
  tokenizer: TokenizerTables;
  /** The weights placed once in a shared WebAssembly memory that every worker computes in (null: pure JS). */
  head: SharedHead | null;
  /** Short hash of the config, weights size and format, reported as `system_fingerprint`. */
  fingerprint: string;
  /** Unique to this load: the worker that loaded it knows its own copy by this id (see WorkerInit.modelId). */
  id: string;
  /** Where the tokenizer tables came from (tokenizer-tables.bin, or which files were scanned and why), for the log. */
  tokenizerSource: string;
  /** Where the model came from (source.json, or the preset it was trained with), as /api/model reports it. */
  source: ModelOrigin;
}

export interface ServedModelOptions {
  /** 'q8_0': quantise the float32 matrices at load (a Q8_0 GGUF is served as Q8_0 without it). */
  quantize?: 'q8_0';
}

/** Whether `path` names a GGUF file: by its extension, so a missing one is reported as a missing file. */
export function isGgufPath(path: string): boolean {
  return path.toLowerCase().endsWith('.gguf');
}

interface LoadedParts {
  config: Readonly<GPTConfig>;
  weights: InferenceWeights;
  tokenizer: TokenizerTables;
  tokenizerSource: string;
  /** The flat float32 buffer, shared, when the weights are float32 and not in WebAssembly memory. */
  params: Float32Array | null;
}

/**
 * Reads a model directory or a GPT-2 GGUF file and checks it; a broken one fails here with a message naming
 * the file and the problem, before anything is served. The weights end up once in shared memory.
 */
export async function loadServedModel(path: string, options: ServedModelOptions = {}): Promise<ServedModel> {
  const gguf = isGgufPath(path);
  const origin = gguf ? ggufOrigin(path) : readModelOrigin(path);
  const parts = gguf ? await fromGguf(path, options) : await fromDirectory(path, options);
  const { config, weights, tokenizer } = parts;
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new Error(
      `${path}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary holds ${config.vocabSize}`,
    );
  }
  const head = weights.sharedHead;
  if (!head && weights.format !== 'f32')
    throw new Error(`${path}: ${weights.format} weights need the WebAssembly kernels, unavailable here`);
  const parameters = parameterLayout(config).total;
  const fingerprint = `fp_${createHash('sha256')
    .update(JSON.stringify(config))
    .update(String(parameters))
    .update(weights.format === 'f32' ? '' : weights.format)
    .digest('hex')
    .slice(0, 10)}`;
  return {
    dir: path,
    config,
    parameters,
    format: weights.format,
    container: gguf ? 'gguf' : 'directory',
    // With the kernels, every worker adopts the weights in their shared memory: no second copy is kept.
    params: head ? null : parts.params,
    tokenizer,
    head,
    fingerprint,
    id: randomUUID(),
    tokenizerSource: parts.tokenizerSource,
    source: await origin,
  };
}

/**
 * A model directory: read straight into the kernels' shared memory when served as float32 (one copy); one
 * stored as model.q8_0.gguf is served as Q8_0, its tokenizer from the directory's tables.
 */
async function fromDirectory(dir: string, options: ServedModelOptions): Promise<LoadedParts> {
  if ((await modelDirWeights(dir)) === 'q8_0') return fromQ8Directory(dir);
  const arena = wasmArena();
  if (options.quantize && arena) return quantisedFromDirectory(dir, options.quantize);
  const loaded = await loadModelDir(dir, {
    requireTokenizer: true,
    tokenizer: 'tables',
    sharedParams: true,
    // Placed for good (never freed): workers read the weights for as long as the server runs.
    paramsInto: arena ? (floats) => arena.f32(arena.alloc(floats * 4), floats) : undefined,
  });
  const tokenizer = loaded.tokenizerTables;
  if (!tokenizer)
    throw new Error(`${dir} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)`);
  // Checks the sizes and packs the LM head once, for every worker (never freed: they read it while serving).
  const weights = new InferenceWeights(loaded.config, loaded.params, {
    head: 'share',
    quantize: options.quantize,
  });
  return {
    config: loaded.config,
    weights,
    tokenizer,
    tokenizerSource: loaded.tokenizerSource ?? 'tokenizer files',
    params: loaded.params.buffer instanceof SharedArrayBuffer && !arena ? loaded.params : null,
  };
}

/**
 * A float32 (or F16/BF16) directory quantised at load: each matrix read a piece at a time into scratch in the
 * kernels' memory and quantised there, so the float32 model is never held whole.
 */
async function quantisedFromDirectory(dir: string, quantize: 'q8_0'): Promise<LoadedParts> {
  const opened = await openModelDir(dir, { requireTokenizer: true, tokenizer: 'tables' });
  try {
    return sourceParts(dir, opened, quantize);
  } finally {
    opened.close();
  }
}

/** A model directory whose weights are model.q8_0.gguf: the int8 blocks go to the kernels as they are stored. */
async function fromQ8Directory(dir: string): Promise<LoadedParts> {
  return sourceParts(dir, await loadQ8ModelDir(dir, { requireTokenizer: true, tokenizer: 'tables' }));
}

/** The weights of a directory given as a ModelSource, placed for every worker, with its tokenizer tables. */
function sourceParts(
  dir: string,
  loaded: {
    config: Readonly<GPTConfig>;
    source: ModelSource;
    tokenizerTables?: TokenizerTables | null;
    tokenizerSource?: string;
  },
  quantize?: 'q8_0',
): LoadedParts {
  const tokenizer = loaded.tokenizerTables;
  if (!tokenizer)
    throw new Error(`${dir} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)`);
  const weights = new InferenceWeights(loaded.config, loaded.source, { head: 'share', quantize });
  return {
    config: loaded.config,
    weights,
    tokenizer,
    tokenizerSource: loaded.tokenizerSource ?? 'tokenizer files',
    params: null,
  };
}

/** A GGUF file's origin as /api/model reports it: the file itself. */
async function ggufOrigin(file: string): Promise<ModelOrigin> {
  const uri = resolvePath(file);
  return {
    kind: 'gguf',
    uri,
    revision: null,
    commit: null,
    preset: null,
    fine_tuned: false,
    description: `GGUF file ${uri}`,
  };
}

/** A GGUF file: Q8_0 matrices stay Q8_0, F16/BF16 become float32 once. */
async function fromGguf(file: string, options: ServedModelOptions): Promise<LoadedParts> {
  const info = await stat(file).catch((err: NodeJS.ErrnoException) => {
    throw new Error(
      `${file}: ${err.code === 'ENOENT' ? 'does not exist' : `cannot be read (${err.message})`}`,
    );
  });
  if (!info.isFile()) throw new Error(`${file}: is not a file`);
  const g = await loadGgufModel(file);
  let tokenizer: TokenizerTables;
  try {
    tokenizer = buildTokenizerTables(g.tokenizerData);
  } catch (err) {
    throw new Error(`${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const weights = new InferenceWeights(g.config, g.params ?? g.source, {
    head: 'share',
    quantize: options.quantize,
  });
  let params: Float32Array | null = null;
  if (g.params && !weights.arena) {
    params = new Float32Array(new SharedArrayBuffer(g.params.byteLength));
    params.set(g.params);
  }
  return { config: g.config, weights, tokenizer, tokenizerSource: `${file} (tokenizer.ggml.*)`, params };
}

/**
 * The served float32 parameters in the layout's order, where they live (the shared WebAssembly memory, or the
 * pure-JS path's SharedArrayBuffer); null when the matrices are q8_0.
 */
export function servedParams(model: ServedModel): Float32Array | null {
  if (model.params) return model.params;
  if (!model.head || model.format !== 'f32') return null;
  return new Float32Array(model.head.memory.buffer, model.head.params, model.parameters);
}
