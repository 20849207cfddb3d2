// Hugging Face model directories (what `save_pretrained` writes for GPT2LMHeadModel): validated load, atomic save.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, type GPTConfig, validateConfig } from '../engine/config.js';
import { firstNonFinite } from '../engine/finite.js';
import type { ModelSource } from '../engine/inference.js';
import {
  canonicalHfName,
  HF_LM_HEAD,
  HF_TOKEN_EMBEDDING,
  isHfBuffer,
  parameterLayout,
  type TensorSpec,
} from '../engine/layout.js';
import { recoverInterruptedDirWrite, writeDirAtomic, writeFileAtomic } from './atomic.js';
import { ggufBytes, loadGgufModel } from './gguf.js';
import { pythonJson } from './python-json.js';
import {
  decodeTensor,
  parseSafetensorsHeader,
  type SafetensorsEntry,
  type SafetensorsHeader,
  safetensorsHeaderLength,
  serializeSafetensors,
  type TensorToWrite,
} from './safetensors.js';
import { TOKENIZER_CACHE_FILE } from './tokenizer-cache.js';
import {
  loadTokenizerData,
  loadTokenizerTablesFrom,
  type TokenizerData,
  type TokenizerTables,
  writeTokenizerCache,
  writeTokenizerFiles,
} from './tokenizer-files.js';

export const CONFIG_FILE = 'config.json';
export const GENERATION_CONFIG_FILE = 'generation_config.json';
export const WEIGHTS_FILE = 'model.safetensors';
/**
 * The int8 weights `create-model --quantize q8_0` writes instead of model.safetensors: a Q8_0 GGUF (our export,
 * tokenizer inside), read as Q8_0 without passing through float32.
 */
export const Q8_WEIGHTS_FILE = 'model.q8_0.gguf';
/** The index of a sharded checkpoint: tensor name → shard file. */
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';
/** The transformers version we write into config files (the reference stack's). */
export const TRANSFORMERS_VERSION = '5.17.0';

/** A load or save problem; the message starts with the file it concerns. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

export interface LoadedModelDir {
  config: Readonly<GPTConfig>;
  /** All parameters in layout order (Conv1D weights [in, out] as HF stores them). */
  params: Float32Array;
  /** generation_config.json as stored, or null when the file is absent. */
  generationConfig: Record<string, unknown> | null;
  tokenizerData: TokenizerData | null;
  /** The tokenizer as checked tables (SharedArrayBuffers), when loaded with `tokenizer: 'tables'` (then tokenizerData is null). */
  tokenizerTables?: TokenizerTables | null;
  /** Where those tables came from: tokenizer-tables.bin, or which files were scanned and why. */
  tokenizerSource?: string;
  /** config.json as stored. */
  hfConfig: Record<string, unknown>;
  dir: string;
  /** The weight files read (model.safetensors, or the shards) and the dtypes they store parameters in. */
  weightFiles: string[];
  storedDtypes: string[];
}

export interface SaveModelOptions {
  config: GPTConfig;
  params: Float32Array;
  tokenizerData: TokenizerData | null;
  /** Written as given (keys sorted); default: what transformers derives from the model config. */
  generationConfig?: Record<string, unknown>;
  /** Extra config.json fields (e.g. dropout rates); the architecture fields always come from `config`. */
  configOverrides?: Record<string, unknown>;
  /** More files for the directory (training.json, loss-curve.svg, README.md, ...): name → content. */
  extraFiles?: Record<string, string | Uint8Array>;
  /** 'q8_0': store the weights as model.q8_0.gguf (int8 matrices) instead of float32 model.safetensors. */
  weights?: 'f32' | 'q8_0';
}

/**
 * Loads a model directory: config.json, model.safetensors, optional generation_config.json and tokenizer
 * files. Everything is validated; errors name the file and the problem.
 */
export interface LoadModelOptions {
  requireTokenizer?: boolean;
  /** 'tables' loads the tokenizer as checked tables (what a server shares with its workers) instead of its data. */
  tokenizer?: 'data' | 'tables';
  /** Put the parameters in a SharedArrayBuffer (worker threads then read them without a copy). */
  sharedParams?: boolean;
  /**
   * Where to read the parameters: a buffer of `floats` floats the caller allocates (e.g. in the kernels' shared
   * memory, so the weights are read once into the memory they are computed in). Called once the files' sizes
   * are checked.
   */
  paramsInto?: (floats: number) => Float32Array;
}

export async function loadModelDir(dir: string, options: LoadModelOptions = {}): Promise<LoadedModelDir> {
  const { config, hfConfig, generationConfig, tokenizerData, tokenizerTables, loadedTables } =
    await readDirParts(dir, options);
  const weights = await findWeightFiles(dir);
  const { params, dtypes } = readParams(
    weights.files,
    weights.index,
    config,
    options.sharedParams === true,
    options.paramsInto,
  );
  const loaded: LoadedModelDir = {
    config,
    params,
    generationConfig,
    tokenizerData,
    hfConfig,
    dir,
    weightFiles: weights.files,
    storedDtypes: dtypes,
  };
  if (options.tokenizer === 'tables') {
    loaded.tokenizerTables = tokenizerTables;
    if (loadedTables) loaded.tokenizerSource = loadedTables.source;
  }
  return loaded;
}

/** A model directory whose weights are model.q8_0.gguf, loaded for inference (see loadQ8ModelDir). */
export interface LoadedQ8ModelDir {
  config: Readonly<GPTConfig>;
  /** Every tensor as the engine takes it: the matrices as the stored Q8_0 blocks, the rest float32. */
  source: ModelSource;
  generationConfig: Record<string, unknown> | null;
  tokenizerData: TokenizerData | null;
  tokenizerTables?: TokenizerTables | null;
  tokenizerSource?: string;
  hfConfig: Record<string, unknown>;
  dir: string;
  weightFile: string;
}

/** Which weights a model directory stores: float32 safetensors (or their shards), or Q8_0 as model.q8_0.gguf. */
export async function modelDirWeights(dir: string): Promise<'safetensors' | 'q8_0'> {
  // A build killed in the middle of swapping directories left the previous model aside: put it back.
  if (!(await stat(dir).catch(() => null))) await recoverInterruptedDirWrite(dir);
  const q8 = await exists(path.join(dir, Q8_WEIGHTS_FILE));
  if (!q8) return 'safetensors';
  for (const name of [WEIGHTS_FILE, WEIGHTS_INDEX_FILE]) {
    if (await exists(path.join(dir, name)))
      throw new CheckpointError(
        dir,
        `holds both ${name} and ${Q8_WEIGHTS_FILE}: which weights to load is ambiguous; remove one`,
      );
  }
  return 'q8_0';
}

/**
 * Loads a model directory that stores its weights as model.q8_0.gguf: config.json, generation_config.json and
 * the tokenizer as loadModelDir reads them, and the GGUF's tensors kept as Q8_0 (never expanded to float32),
 * checked against config.json. Errors name the file and the problem.
 */
export async function loadQ8ModelDir(
  dir: string,
  options: Pick<LoadModelOptions, 'requireTokenizer' | 'tokenizer'> = {},
): Promise<LoadedQ8ModelDir> {
  const { config, hfConfig, generationConfig, tokenizerData, tokenizerTables, loadedTables } =
    await readDirParts(dir, options);
  if ((await modelDirWeights(dir)) !== 'q8_0')
    throw new CheckpointError(path.join(dir, Q8_WEIGHTS_FILE), 'missing');
  const weightFile = path.join(dir, Q8_WEIGHTS_FILE);
  const g = await loadGgufModel(weightFile);
  if (g.format !== 'q8_0') throw new CheckpointError(weightFile, 'stores no Q8_0 matrices');
  const fields: Array<[keyof GPTConfig, string]> = [
    ['vocabSize', 'vocab_size'],
    ['nPositions', 'n_positions'],
    ['nEmbd', 'n_embd'],
    ['nLayer', 'n_layer'],
    ['nHead', 'n_head'],
    ['tieWordEmbeddings', 'tie_word_embeddings'],
    ['bosTokenId', 'bos_token_id'],
    ['eosTokenId', 'eos_token_id'],
  ];
  for (const [key, hfKey] of fields) {
    if (g.config[key] !== config[key])
      throw new CheckpointError(
        weightFile,
        `${hfKey} is ${String(g.config[key])} but ${CONFIG_FILE} says ${String(config[key])}`,
      );
  }
  if (Math.fround(g.config.layerNormEpsilon) !== Math.fround(config.layerNormEpsilon))
    throw new CheckpointError(
      weightFile,
      `layer_norm_epsilon is ${g.config.layerNormEpsilon} but ${CONFIG_FILE} says ${config.layerNormEpsilon}`,
    );
  const loaded: LoadedQ8ModelDir = {
    config,
    source: g.source,
    generationConfig,
    tokenizerData,
    hfConfig,
    dir,
    weightFile,
  };
  if (options.tokenizer === 'tables') {
    loaded.tokenizerTables = tokenizerTables;
    if (loadedTables) loaded.tokenizerSource = loadedTables.source;
  }
  return loaded;
}

/** Everything of a model directory but its weights: config, generation config and tokenizer, checked. */
async function readDirParts(dir: string, options: LoadModelOptions) {
  let info = await stat(dir).catch(() => null);
  // A build killed in the middle of swapping directories left the previous model aside: put it back.
  if (!info && (await recoverInterruptedDirWrite(dir))) info = await stat(dir).catch(() => null);
  if (!info) throw new CheckpointError(dir, 'model directory does not exist');
  if (!info.isDirectory()) throw new CheckpointError(dir, 'is not a directory');

  const configFile = path.join(dir, CONFIG_FILE);
  const hfConfig = parseJsonObject(await readRequired(configFile), configFile);
  const config = configFromHf(hfConfig, configFile);

  const generationFile = path.join(dir, GENERATION_CONFIG_FILE);
  const generationText = await readOptional(generationFile);
  const generationConfig = generationText === null ? null : parseJsonObject(generationText, generationFile);

  const asTables = options.tokenizer === 'tables';
  const tokenizerData = asTables ? null : await loadTokenizerData(dir);
  const loadedTables = asTables ? await loadTokenizerTablesFrom(dir) : null;
  const tokenizerTables = loadedTables?.tables ?? null;
  if (!tokenizerData && !tokenizerTables && options.requireTokenizer) {
    throw new CheckpointError(dir, 'no tokenizer files (tokenizer.json, or vocab.json + merges.txt)');
  }
  if (tokenizerData || tokenizerTables) {
    // Tables hold ids 0..n-1 (checked), so their size is the vocab size.
    const tokenizerVocab = tokenizerTables ? tokenizerTables.vocabSize : tokenizerVocabSize(tokenizerData!);
    if (tokenizerVocab !== config.vocabSize) {
      throw new CheckpointError(
        configFile,
        `vocab_size ${config.vocabSize} does not match the tokenizer's ${tokenizerVocab} tokens`,
      );
    }
  }

  return { config, hfConfig, generationConfig, tokenizerData, tokenizerTables, loadedTables };
}

async function readRequired(file: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(file, 'missing');
    throw new CheckpointError(file, `cannot be read (${(err as Error).message})`);
  }
}

async function readOptional(file: string): Promise<Uint8Array | null> {
  try {
    return new Uint8Array(await readFile(file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CheckpointError(file, `cannot be read (${(err as Error).message})`);
  }
}

function parseJsonObject(bytes: Uint8Array, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new CheckpointError(file, `invalid JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CheckpointError(file, 'must hold a JSON object');
  }
  return value as Record<string, unknown>;
}

/** Maps an HF GPT2Config to ours, rejecting settings this engine does not compute. */
export function configFromHf(hf: Record<string, unknown>, file = CONFIG_FILE): Readonly<GPTConfig> {
  const fail = (problem: string): never => {
    throw new CheckpointError(file, problem);
  };
  const archs = hf.architectures;
  if (
    archs !== undefined &&
    archs !== null &&
    (!Array.isArray(archs) || archs.some((a) => typeof a !== 'string'))
  )
    fail(`architectures must be a list of class names, got ${JSON.stringify(archs)}`);
  const named = (archs as string[] | undefined | null) ?? [];
  if (hf.model_type !== 'gpt2') {
    const found =
      named.length > 0
        ? `architecture ${named.join(', ')} (model_type ${JSON.stringify(hf.model_type)})`
        : `model_type ${JSON.stringify(hf.model_type)}`;
    fail(`${found} is not GPT-2: only GPT2LMHeadModel checkpoints (model_type "gpt2") are supported`);
  }
  // GPT2Model is the same network without the head; our head is tied to its token embedding.
  const usable = ['GPT2LMHeadModel', 'GPT2Model'];
  if (named.length > 0 && !named.some((a) => usable.includes(a))) {
    fail(
      `architecture ${named.join(', ')} is not supported: only GPT2LMHeadModel (or GPT2Model) checkpoints are`,
    );
  }
  // gelu_pytorch_tanh is PyTorch's name for the same tanh approximation.
  const activation = hf.activation_function ?? 'gelu_new';
  if (activation !== 'gelu_new' && activation !== 'gelu_pytorch_tanh') {
    fail(`activation_function ${JSON.stringify(activation)} is not supported (only "gelu_new")`);
  }
  const positiveInt = (key: string, fallbackKey?: string): number => {
    let value = hf[key];
    if (value === undefined && fallbackKey) value = hf[fallbackKey];
    if (value === undefined) fail(`missing field "${key}"`);
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      fail(`field "${key}" must be a positive integer, got ${JSON.stringify(value)}`);
    }
    return value as number;
  };
  const nEmbd = positiveInt('n_embd');
  const nLayer = positiveInt('n_layer');
  const nHead = positiveInt('n_head');
  const nPositions = positiveInt('n_positions', 'n_ctx');
  const vocabSize = positiveInt('vocab_size');
  if (nEmbd % nHead !== 0) fail(`n_embd (${nEmbd}) must be divisible by n_head (${nHead})`);
  if (hf.n_inner !== undefined && hf.n_inner !== null && hf.n_inner !== 4 * nEmbd) {
    fail(`n_inner ${JSON.stringify(hf.n_inner)} is not supported (only null or 4·n_embd = ${4 * nEmbd})`);
  }
  // Settings that change what the network computes. reorder_and_upcast_attn only changes the order of
  // rounding in half precision (we compute in float32), so either value is accepted.
  const flags: Array<[string, unknown, string]> = [
    ['scale_attn_weights', true, 'attention scores are always scaled by 1/sqrt(head size)'],
    ['scale_attn_by_inverse_layer_idx', false, 'attention scores are not scaled by the layer index'],
    ['add_cross_attention', false, 'GPT-2 here has no cross-attention'],
  ];
  for (const [key, supported, why] of flags) {
    if (hf[key] !== undefined && hf[key] !== supported)
      fail(`${key} ${JSON.stringify(hf[key])} is not supported (${why})`);
  }
  for (const key of ['reorder_and_upcast_attn', 'use_cache']) {
    if (hf[key] !== undefined && typeof hf[key] !== 'boolean')
      fail(`field "${key}" must be a boolean, got ${JSON.stringify(hf[key])}`);
  }
  const eps = hf.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps)) {
    fail(`field "layer_norm_epsilon" must be a positive number, got ${JSON.stringify(eps)}`);
  }
  const tie = hf.tie_word_embeddings ?? true;
  if (typeof tie !== 'boolean')
    fail(`field "tie_word_embeddings" must be a boolean, got ${JSON.stringify(tie)}`);
  const tokenId = (key: string): number => {
    // GPT2Config's default for both is 50256 (<|endoftext|>).
    const value = hf[key] ?? 50256;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= vocabSize) {
      fail(`field "${key}" must be a token id below vocab_size ${vocabSize}, got ${JSON.stringify(value)}`);
    }
    return value as number;
  };
  const config: GPTConfig = {
    vocabSize,
    nPositions,
    nEmbd,
    nLayer,
    nHead,
    layerNormEpsilon: eps as number,
    tieWordEmbeddings: tie as boolean,
    bosTokenId: tokenId('bos_token_id'),
    eosTokenId: tokenId('eos_token_id'),
  };
  let valid: Readonly<GPTConfig>;
  try {
    valid = validateConfig(config);
  } catch (err) {
    if (err instanceof ConfigError) throw new CheckpointError(file, err.message);
    throw err;
  }
  // The layout's size is a product of config fields: bound it before anything is sized from it.
  const total = parameterLayout(valid).total;
  if (total > MAX_PARAMETERS) {
    fail(
      `n_embd ${nEmbd}, n_layer ${nLayer}, vocab_size ${vocabSize} and n_positions ${nPositions} make ` +
        `${total.toExponential(3)} parameters, more than this engine holds (${MAX_PARAMETERS})`,
    );
  }
  return valid;
}

/** Parameters one flat float32 buffer may hold here (8 GiB); GPT-2 XL has 1.6e9. */
const MAX_PARAMETERS = 2 ** 31;

/** Number of token ids the tokenizer can produce (ids are 0..n-1). */
function tokenizerVocabSize(data: TokenizerData): number {
  let max = -1;
  for (const id of Object.values(data.vocab)) if (id > max) max = id;
  return max + 1;
}

/** Reads exactly `length` bytes at `position` of an open file into `into` at `offset`; false at an early end. */
function readFully(fd: number, into: Uint8Array, offset: number, length: number, position: number): boolean {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, into, offset + done, length - done, position + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}

/** Other checkpoint formats a model directory may hold instead of safetensors, and what they are. */
const OTHER_WEIGHT_FORMATS: Array<[string, string]> = [
  ['pytorch_model.bin', 'a PyTorch pickle checkpoint'],
  ['pytorch_model.bin.index.json', 'the index of a sharded PyTorch pickle checkpoint'],
  ['tf_model.h5', 'a TensorFlow checkpoint'],
  ['flax_model.msgpack', 'a Flax checkpoint'],
];

/**
 * The weight files of a model directory: model.safetensors, else the shards that
 * model.safetensors.index.json names (each checked to be a plain file name beside it), with the tensor → shard
 * map to check the shards' headers against. Other formats are refused by name.
 */
async function findWeightFiles(
  dir: string,
): Promise<{ files: string[]; index: { file: string; map: Map<string, string> } | null }> {
  if ((await modelDirWeights(dir)) === 'q8_0')
    throw new CheckpointError(
      path.join(dir, Q8_WEIGHTS_FILE),
      `holds Q8_0 (int8) weights; this needs float32 weights (${WEIGHTS_FILE}): use the model directory ` +
        'create-model wrote without --quantize',
    );
  const single = path.join(dir, WEIGHTS_FILE);
  if (await exists(single)) return { files: [single], index: null };
  const indexFile = path.join(dir, WEIGHTS_INDEX_FILE);
  const indexText = await readOptional(indexFile);
  if (indexText === null) {
    for (const [name, what] of OTHER_WEIGHT_FORMATS) {
      if (await exists(path.join(dir, name))) {
        throw new CheckpointError(
          path.join(dir, name),
          `is ${what}; only safetensors weights are read (${WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}). ` +
            'Convert it with transformers: from_pretrained(dir) then save_pretrained(out, safe_serialization=True)',
        );
      }
    }
    throw new CheckpointError(single, `missing (and no ${WEIGHTS_INDEX_FILE} or ${Q8_WEIGHTS_FILE})`);
  }
  const index = parseJsonObject(indexText, indexFile);
  const weightMap = index.weight_map;
  if (weightMap === null || typeof weightMap !== 'object' || Array.isArray(weightMap))
    throw new CheckpointError(indexFile, '"weight_map" must be an object of tensor name → shard file');
  const map = new Map<string, string>();
  const shards: string[] = [];
  for (const [tensor, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== 'string' || !isPlainFileName(shard) || !shard.endsWith('.safetensors')) {
      throw new CheckpointError(
        indexFile,
        `weight_map["${tensor}"] must name a .safetensors file in the same directory, got ${JSON.stringify(shard)}`,
      );
    }
    map.set(tensor, shard);
    if (!shards.includes(shard)) shards.push(shard);
  }
  if (shards.length === 0) throw new CheckpointError(indexFile, 'weight_map is empty');
  shards.sort();
  return { files: shards.map((s) => path.join(dir, s)), index: { file: indexFile, map } };
}

function isPlainFileName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && name === path.basename(name) && !name.includes('\\');
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** A stored tensor matched to its place in the layout table (or to the tied head, which has none). */
interface PlannedTensor {
  file: OpenWeights;
  stored: string;
  entry: SafetensorsEntry;
  spec: TensorSpec | null;
}

interface OpenWeights {
  path: string;
  fd: number;
  header: SafetensorsHeader;
}

/**
 * Reads the weight files into one flat parameter buffer, validated against the layout table. Every header
 * is read and checked first, and every tensor matched to the table by name, dtype and shape; only then is
 * the buffer allocated, so its size is bounded by what the files really hold, whatever config.json claims.
 * Each float32 tensor goes from the file straight to its place in the buffer (the file is never held in
 * memory a second time); F16/BF16 tensors and a stored tied head pass through a buffer of their own.
 * Synchronous: the reads are few and large, and the loader has nothing else to do meanwhile.
 */
function readParams(
  paths: string[],
  index: { file: string; map: Map<string, string> } | null,
  config: GPTConfig,
  shared: boolean,
  into?: (floats: number) => Float32Array,
): { params: Float32Array; dtypes: string[] } {
  const weights = openWeights(paths, index, config);
  try {
    const { plan } = weights;
    const dtypes = [...new Set(plan.map((t) => t.entry.dtype))].sort();
    return { params: readPlanned(plan, config, shared, into), dtypes };
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(paths[0], `cannot be read (${(err as Error).message})`);
  } finally {
    weights.close();
  }
}

/** The weight files open, their headers checked and every tensor matched to the layout (see planTensors). */
function openWeights(
  paths: string[],
  index: { file: string; map: Map<string, string> } | null,
  config: GPTConfig,
): { plan: PlannedTensor[]; close(): void } {
  const open: OpenWeights[] = [];
  const close = () => {
    for (const f of open.splice(0)) closeSync(f.fd);
  };
  try {
    for (const file of paths) {
      let fd: number;
      try {
        fd = openSync(file, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          const by = index ? ` (named by ${path.basename(index.file)})` : '';
          throw new CheckpointError(file, `missing${by}`);
        }
        throw new CheckpointError(file, `cannot be read (${(err as Error).message})`);
      }
      open.push({ path: file, fd, header: { entries: [], metadata: null } });
      open[open.length - 1].header = readHeader(fd, file);
    }
    if (index) checkShardIndex(index, open);
    return { plan: planTensors(open, config), close };
  } catch (err) {
    const file = open.length > 0 ? open[open.length - 1].path : paths[0];
    close();
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(file, `cannot be read (${(err as Error).message})`);
  }
}

/**
 * Reads elements [start, start + count) of a planned tensor into `into` (float32, F16/BF16 converted), and
 * checks they are finite. The file must still be open.
 */
function readPlannedRange(t: PlannedTensor, start: number, count: number, into: Float32Array): void {
  const fail = (problem: string): never => {
    throw new CheckpointError(t.file.path, problem);
  };
  const size = t.entry.shape.reduce((a, b) => a * b, 1);
  if (start < 0 || count < 0 || start + count > size || into.length < count)
    throw new RangeError(`${t.stored}: elements [${start}, ${start + count}) of ${size}`);
  const width = t.entry.dtype === 'F32' ? 4 : 2;
  const position = t.entry.start + start * width;
  if (width === 4) {
    const bytes = new Uint8Array(into.buffer, into.byteOffset, count * 4);
    if (!readFully(t.file.fd, bytes, 0, count * 4, position)) fail('truncated while it was being read');
  } else {
    const bytes = new Uint8Array(count * 2);
    if (!readFully(t.file.fd, bytes, 0, count * 2, position)) fail('truncated while it was being read');
    into.set(decodeTensor(t.entry.dtype, bytes) as Float32Array);
  }
  const bad = firstNonFinite(into.subarray(0, count));
  if (bad >= 0) fail(`tensor ${t.stored} holds a non-finite value at index ${start + bad}`);
}

/** A model directory whose weights are read on demand (see openModelDir); close() when done. */
export interface OpenModelDir extends Omit<LoadedModelDir, 'params'> {
  /** Every tensor as float32 read from the files when asked, piece by piece (see TensorData 'f32-read'). */
  source: ModelSource;
  close(): void;
}

/** Floats compared at a time when a stored tied head is checked against the embedding. */
const TIED_CHECK_FLOATS = 1 << 18;

/**
 * Opens a float32/F16/BF16 model directory as loadModelDir checks it (config, tokenizer, every header and
 * tensor matched to the layout), without reading the weights: the source reads each tensor, or a piece of it,
 * when asked, so a loader that converts them (quantising at load) never holds the float32 model.
 */
export async function openModelDir(dir: string, options: LoadModelOptions = {}): Promise<OpenModelDir> {
  const { config, hfConfig, generationConfig, tokenizerData, tokenizerTables, loadedTables } =
    await readDirParts(dir, options);
  const found = await findWeightFiles(dir);
  const weights = openWeights(found.files, found.index, config);
  try {
    const byName = new Map<string, PlannedTensor>();
    let storedHead: PlannedTensor | null = null;
    for (const t of weights.plan) {
      if (t.spec) byName.set(t.spec.hfName, t);
      else storedHead = t;
    }
    const embedding = byName.get(HF_TOKEN_EMBEDDING);
    if (storedHead && embedding) {
      // A tied head stored anyway must be the embedding, as loadModelDir checks; compared piece by piece.
      const size = config.vocabSize * config.nEmbd;
      const a = new Float32Array(Math.min(TIED_CHECK_FLOATS, size));
      const b = new Float32Array(a.length);
      for (let at = 0; at < size; at += a.length) {
        const n = Math.min(a.length, size - at);
        readPlannedRange(embedding, at, n, a);
        readPlannedRange(storedHead, at, n, b);
        for (let i = 0; i < n; i++)
          if (!Object.is(a[i], b[i]))
            throw new CheckpointError(
              storedHead.file.path,
              `${HF_LM_HEAD} differs from ${HF_TOKEN_EMBEDDING} but config.json says tie_word_embeddings is true`,
            );
      }
    }
    const source: ModelSource = {
      tensor(hfName) {
        const t = byName.get(hfName);
        if (!t) throw new Error(`${dir}: no tensor ${hfName}`);
        return { format: 'f32-read', read: (start, count, into) => readPlannedRange(t, start, count, into) };
      },
    };
    const opened: OpenModelDir = {
      config,
      source,
      generationConfig,
      tokenizerData,
      hfConfig,
      dir,
      weightFiles: found.files,
      storedDtypes: [...new Set(weights.plan.map((t) => t.entry.dtype))].sort(),
      close: weights.close,
    };
    if (options.tokenizer === 'tables') {
      opened.tokenizerTables = tokenizerTables;
      if (loadedTables) opened.tokenizerSource = loadedTables.source;
    }
    return opened;
  } catch (err) {
    weights.close();
    throw err;
  }
}

/** The checked header of an open safetensors file. */
function readHeader(fd: number, file: string): SafetensorsHeader {
  const size = fstatSync(fd).size;
  const read = (length: number, position: number): Uint8Array => {
    const out = new Uint8Array(length);
    if (!readFully(fd, out, 0, length, position))
      throw new CheckpointError(file, 'truncated while it was being read');
    return out;
  };
  try {
    const headerLength = safetensorsHeaderLength(read(Math.min(8, size), 0), size, file);
    return parseSafetensorsHeader(read(headerLength, 8), size, file);
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(file, (err as Error).message.replace(`${file}: `, ''));
  }
}

/** Every tensor of every shard must be where the index says, and every indexed tensor in its shard. */
function checkShardIndex(index: { file: string; map: Map<string, string> }, open: OpenWeights[]): void {
  const found = new Set<string>();
  for (const f of open) {
    const shard = path.basename(f.path);
    for (const e of f.header.entries) {
      const listed = index.map.get(e.name);
      if (listed !== shard) {
        throw new CheckpointError(
          index.file,
          listed === undefined
            ? `tensor ${e.name} of ${shard} is not in weight_map`
            : `weight_map puts tensor ${e.name} in ${listed}, but it is stored in ${shard}`,
        );
      }
      found.add(e.name);
    }
  }
  for (const [tensor, shard] of index.map) {
    if (!found.has(tensor))
      throw new CheckpointError(
        index.file,
        `weight_map puts tensor ${tensor} in ${shard}, which does not hold it`,
      );
  }
}

/** Matches the stored tensors to the layout table: names, dtypes, shapes, nothing missing, nothing extra. */
function planTensors(open: OpenWeights[], config: GPTConfig): PlannedTensor[] {
  const layout = parameterLayout(config);
  const plan: PlannedTensor[] = [];
  const seen = new Map<string, string>(); // canonical name → stored name
  const unexpected: string[] = [];
  for (const file of open) {
    const fail = (problem: string): never => {
      throw new CheckpointError(file.path, problem);
    };
    for (const entry of file.header.entries) {
      const stored = entry.name;
      const canonical = canonicalHfName(stored);
      if (isHfBuffer(canonical)) continue;
      const spec = layout.byName.get(canonical) ?? null;
      const isTiedHead = !spec && canonical === HF_LM_HEAD && config.tieWordEmbeddings;
      if (!spec && !isTiedHead) {
        unexpected.push(stored);
        continue;
      }
      if (seen.has(canonical)) fail(`tensors ${seen.get(canonical)} and ${stored} are the same parameter`);
      seen.set(canonical, stored);
      if (entry.dtype !== 'F32' && entry.dtype !== 'F16' && entry.dtype !== 'BF16') {
        fail(`tensor ${stored} has dtype ${entry.dtype}, expected F32 (or F16/BF16)`);
      }
      const expectedShape = spec ? spec.shape : [config.vocabSize, config.nEmbd];
      if (!sameShape(entry.shape, expectedShape)) {
        fail(
          `tensor ${stored} has shape ${fmtShape(entry.shape)}, expected ${fmtShape(expectedShape)} ` +
            `(config.json: vocab_size ${config.vocabSize}, n_positions ${config.nPositions}, n_embd ${config.nEmbd})`,
        );
      }
      plan.push({ file, stored, entry, spec });
    }
  }
  const where = open.length === 1 ? open[0].path : path.dirname(open[0].path);
  if (unexpected.length > 0) {
    throw new CheckpointError(
      where,
      `unexpected tensors ${unexpected.join(', ')} (not part of a GPT-2 with n_layer=${config.nLayer})`,
    );
  }
  const missing = layout.tensors.filter((t) => !seen.has(t.hfName)).map((t) => t.hfName);
  if (missing.length > 0) {
    const hint = missing.includes(HF_LM_HEAD)
      ? ` (tie_word_embeddings is false, so ${HF_LM_HEAD} is needed)`
      : '';
    throw new CheckpointError(where, `missing tensors ${missing.join(', ')}${hint}`);
  }
  return plan;
}

/** Allocates the parameter buffer (its size now backed by the files) and reads every planned tensor into it. */
function readPlanned(
  plan: PlannedTensor[],
  config: GPTConfig,
  shared: boolean,
  into?: (floats: number) => Float32Array,
): Float32Array {
  const layout = parameterLayout(config);
  const params = into
    ? into(layout.total)
    : new Float32Array(shared ? new SharedArrayBuffer(layout.total * 4) : new ArrayBuffer(layout.total * 4));
  if (params.length !== layout.total)
    throw new RangeError(`parameter buffer of ${params.length} floats, the layout needs ${layout.total}`);
  let storedLmHead: { data: Float32Array; file: string } | null = null;
  for (const t of plan) {
    if (t.spec)
      readPlannedRange(t, 0, t.spec.size, params.subarray(t.spec.offset, t.spec.offset + t.spec.size));
    else {
      const data = new Float32Array(config.vocabSize * config.nEmbd);
      readPlannedRange(t, 0, data.length, data);
      storedLmHead = { data, file: t.file.path };
    }
  }
  if (storedLmHead) {
    const wte = layout.byName.get(HF_TOKEN_EMBEDDING)!;
    const embedding = params.subarray(wte.offset, wte.offset + wte.size);
    for (let i = 0; i < embedding.length; i++) {
      if (!Object.is(embedding[i], storedLmHead.data[i])) {
        throw new CheckpointError(
          storedLmHead.file,
          `${HF_LM_HEAD} differs from ${HF_TOKEN_EMBEDDING} but config.json says tie_word_embeddings is true`,
        );
      }
    }
  }
  return params;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function fmtShape(shape: number[]): string {
  return `[${shape.join(',')}]`;
}

/** config.json keys transformers writes as floats (Python prints them with a decimal point). */
const CONFIG_FLOAT_KEYS = new Set([
  'attn_pdrop',
  'embd_pdrop',
  'resid_pdrop',
  'initializer_range',
  'layer_norm_epsilon',
  'summary_first_dropout',
]);

/** The config.json `save_pretrained` writes for a GPT2LMHeadModel with this config. */
export function hfConfigFor(
  config: GPTConfig,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    activation_function: 'gelu_new',
    add_cross_attention: false,
    architectures: ['GPT2LMHeadModel'],
    attn_pdrop: 0,
    dtype: 'float32',
    embd_pdrop: 0,
    initializer_range: 0.02,
    n_inner: null,
    pad_token_id: null,
    reorder_and_upcast_attn: false,
    resid_pdrop: 0,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    summary_activation: null,
    summary_first_dropout: 0.1,
    summary_proj_to_labels: true,
    summary_type: 'cls_index',
    summary_use_proj: true,
    transformers_version: TRANSFORMERS_VERSION,
    use_cache: true,
    ...overrides,
    // The architecture always comes from the config being saved.
    model_type: 'gpt2',
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenId,
    layer_norm_epsilon: config.layerNormEpsilon,
    n_embd: config.nEmbd,
    n_head: config.nHead,
    n_layer: config.nLayer,
    n_positions: config.nPositions,
    tie_word_embeddings: config.tieWordEmbeddings,
    vocab_size: config.vocabSize,
  };
}

/** The generation_config.json transformers derives from the model config. */
export function defaultGenerationConfig(config: GPTConfig): Record<string, unknown> {
  return {
    _from_model_config: true,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenId,
    output_attentions: false,
    output_hidden_states: false,
    transformers_version: TRANSFORMERS_VERSION,
    use_cache: true,
  };
}

/** model.safetensors bytes for these parameters: HF names, Conv1D [in, out], tied lm_head not stored. */
export function weightsToSafetensors(config: GPTConfig, params: Float32Array): Uint8Array {
  const layout = parameterLayout(config);
  if (params.length !== layout.total) {
    throw new Error(`params has ${params.length} floats, the layout for this config needs ${layout.total}`);
  }
  const tensors = new Map<string, TensorToWrite>();
  for (const t of layout.tensors) {
    tensors.set(t.hfName, {
      dtype: 'F32',
      shape: t.shape,
      data: params.subarray(t.offset, t.offset + t.size),
    });
  }
  return serializeSafetensors(tensors, { format: 'pt' });
}

const RESERVED_FILES = new Set([
  CONFIG_FILE,
  GENERATION_CONFIG_FILE,
  WEIGHTS_FILE,
  Q8_WEIGHTS_FILE,
  'tokenizer.json',
  'vocab.json',
  'merges.txt',
  'tokenizer_config.json',
  'special_tokens_map.json',
  TOKENIZER_CACHE_FILE,
]);

/**
 * Writes a complete model directory atomically (built in a temp dir, then swapped in): config.json,
 * generation_config.json, model.safetensors (or model.q8_0.gguf with `weights: 'q8_0'`), tokenizer files and their tables (tokenizer-tables.bin, when a tokenizer is given) and extra files.
 * The same inputs always give the same bytes.
 */
export async function saveModelDir(dir: string, options: SaveModelOptions): Promise<void> {
  const config = validateConfig(options.config);
  const q8 = options.weights === 'q8_0';
  if (q8 && !options.tokenizerData) throw new Error(`${Q8_WEIGHTS_FILE} needs a tokenizer (GGUF holds one)`);
  if (q8 && config.nEmbd % 32 !== 0)
    throw new Error(`q8_0 weights need n_embd a multiple of 32 (Q8_0 blocks), got ${config.nEmbd}`);
  const weights = q8
    ? ggufBytes({ config, params: options.params, tokenizerData: options.tokenizerData!, quantize: 'q8_0' })
    : weightsToSafetensors(config, options.params);
  const extraFiles = Object.entries(options.extraFiles ?? {});
  for (const [name] of extraFiles) {
    if (name !== path.basename(name) || name === '.' || name === '..' || name.includes('\\') || name === '') {
      throw new Error(`extra file name ${JSON.stringify(name)} must be a plain file name`);
    }
    if (RESERVED_FILES.has(name)) throw new Error(`extra file ${name} would overwrite a model file`);
  }
  const configText = pythonJson(hfConfigFor(config, options.configOverrides), CONFIG_FLOAT_KEYS);
  const generationText = pythonJson(
    options.generationConfig ?? defaultGenerationConfig(config),
    CONFIG_FLOAT_KEYS,
  );

  await writeDirAtomic(dir, async (tmp) => {
    await writeFileAtomic(path.join(tmp, CONFIG_FILE), configText);
    await writeFileAtomic(path.join(tmp, GENERATION_CONFIG_FILE), generationText);
    await writeFileAtomic(path.join(tmp, q8 ? Q8_WEIGHTS_FILE : WEIGHTS_FILE), weights);
    if (options.tokenizerData) {
      await writeTokenizerFiles(tmp, options.tokenizerData, { modelMaxLength: config.nPositions });
      // The tables a server would build from those files, so it loads them instead of scanning the files.
      await writeTokenizerCache(tmp);
    }
    for (const [name, content] of extraFiles) await writeFileAtomic(path.join(tmp, name), content);
  });
}
