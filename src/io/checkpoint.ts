// Hugging Face model directories (what `save_pretrained` writes for GPT2LMHeadModel): validated load, atomic save.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, type GPTConfig, validateConfig } from '../engine/config.js';
import { parameterLayout } from '../engine/layout.js';
import { recoverInterruptedDirWrite, writeDirAtomic, writeFileAtomic } from './atomic.js';
import {
  decodeTensor,
  parseSafetensorsHeader,
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
}

/** GPT-2 attention buffers some checkpoints carry; they are not parameters. */
const BUFFER_NAME = /^transformer\.h\.\d+\.attn\.(bias|masked_bias)$/;

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
}

export async function loadModelDir(dir: string, options: LoadModelOptions = {}): Promise<LoadedModelDir> {
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

  const weightsFile = path.join(dir, WEIGHTS_FILE);
  const params = readParams(weightsFile, config, options.sharedParams === true);
  const loaded: LoadedModelDir = { config, params, generationConfig, tokenizerData, hfConfig, dir };
  if (asTables) {
    loaded.tokenizerTables = tokenizerTables;
    if (loadedTables) loaded.tokenizerSource = loadedTables.source;
  }
  return loaded;
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
  if (hf.model_type !== 'gpt2') fail(`model_type is ${JSON.stringify(hf.model_type)}, expected "gpt2"`);
  if (hf.architectures !== undefined) {
    const archs = hf.architectures;
    if (!Array.isArray(archs) || !archs.includes('GPT2LMHeadModel')) {
      fail(`architectures is ${JSON.stringify(archs)}, expected ["GPT2LMHeadModel"]`);
    }
  }
  const activation = hf.activation_function ?? 'gelu_new';
  if (activation !== 'gelu_new') {
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
  const flags: Array<[string, unknown]> = [
    ['scale_attn_weights', true],
    ['scale_attn_by_inverse_layer_idx', false],
    ['add_cross_attention', false],
  ];
  for (const [key, supported] of flags) {
    if (hf[key] !== undefined && hf[key] !== supported)
      fail(`${key} ${JSON.stringify(hf[key])} is not supported`);
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
  try {
    return validateConfig(config);
  } catch (err) {
    if (err instanceof ConfigError) throw new CheckpointError(file, err.message);
    throw err;
  }
}

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

/**
 * Reads model.safetensors into one flat parameter buffer, validated against the layout table. The header is
 * read and checked first; then each float32 tensor goes from the file straight to its place in the buffer,
 * so the file is never held in memory a second time (one 13 MB allocation, page-in and copy less at every
 * server start). F16/BF16 tensors and a stored tied head pass through a buffer of their own. Synchronous:
 * the reads are few and large, and the loader has nothing else to do meanwhile.
 */
function readParams(file: string, config: GPTConfig, shared: boolean): Float32Array {
  const fail = (problem: string): never => {
    throw new CheckpointError(file, problem);
  };
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(file, 'missing');
    throw new CheckpointError(file, `cannot be read (${(err as Error).message})`);
  }
  try {
    return readParamsFrom(fd, file, config, shared, fail);
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(file, `cannot be read (${(err as Error).message})`);
  } finally {
    closeSync(fd);
  }
}

function readParamsFrom(
  fd: number,
  file: string,
  config: GPTConfig,
  shared: boolean,
  fail: (problem: string) => never,
): Float32Array {
  const size = fstatSync(fd).size;
  const read = (length: number, position: number): Uint8Array => {
    const out = new Uint8Array(length);
    if (!readFully(fd, out, 0, length, position)) fail('truncated while it was being read');
    return out;
  };
  let header: SafetensorsHeader;
  try {
    const headerLength = safetensorsHeaderLength(read(Math.min(8, size), 0), size, file);
    header = parseSafetensorsHeader(read(headerLength, 8), size, file);
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(file, (err as Error).message.replace(`${file}: `, ''));
  }
  const layout = parameterLayout(config);
  const params = new Float32Array(
    shared ? new SharedArrayBuffer(layout.total * 4) : new ArrayBuffer(layout.total * 4),
  );
  const paramBytes = new Uint8Array(params.buffer);
  const seen = new Map<string, string>(); // canonical name → stored name
  const unexpected: string[] = [];
  let storedLmHead: Float32Array | null = null;

  for (const tensor of header.entries) {
    const stored = tensor.name;
    const canonical =
      stored.startsWith('transformer.') || stored === 'lm_head.weight' ? stored : `transformer.${stored}`;
    if (BUFFER_NAME.test(canonical)) continue;
    const spec = layout.byName.get(canonical);
    const isTiedHead = !spec && canonical === 'lm_head.weight' && config.tieWordEmbeddings;
    if (!spec && !isTiedHead) {
      unexpected.push(stored);
      continue;
    }
    if (seen.has(canonical)) fail(`tensors ${seen.get(canonical)} and ${stored} are the same parameter`);
    seen.set(canonical, stored);
    if (tensor.dtype !== 'F32' && tensor.dtype !== 'F16' && tensor.dtype !== 'BF16') {
      fail(`tensor ${stored} has dtype ${tensor.dtype}, expected F32 (or F16/BF16)`);
    }
    const expectedShape = spec ? spec.shape : [config.vocabSize, config.nEmbd];
    if (!sameShape(tensor.shape, expectedShape)) {
      fail(`tensor ${stored} has shape ${fmtShape(tensor.shape)}, expected ${fmtShape(expectedShape)}`);
    }
    let data: Float32Array;
    if (spec && tensor.dtype === 'F32') {
      if (!readFully(fd, paramBytes, spec.offset * 4, tensor.bytes, tensor.start))
        fail('truncated while it was being read');
      data = params.subarray(spec.offset, spec.offset + spec.size);
    } else {
      data = decodeTensor(tensor.dtype, read(tensor.bytes, tensor.start)) as Float32Array;
      if (spec) params.set(data, spec.offset);
    }
    const bad = firstNonFinite(data);
    if (bad >= 0) fail(`tensor ${stored} holds a non-finite value at index ${bad}`);
    if (!spec) storedLmHead = data;
  }
  if (unexpected.length > 0) {
    fail(`unexpected tensors ${unexpected.join(', ')} (not part of a GPT-2 with n_layer=${config.nLayer})`);
  }
  const missing = layout.tensors.filter((t) => !seen.has(t.hfName)).map((t) => t.hfName);
  if (missing.length > 0) {
    const hint = missing.includes('lm_head.weight')
      ? ' (tie_word_embeddings is false, so lm_head.weight is needed)'
      : '';
    fail(`missing tensors ${missing.join(', ')}${hint}`);
  }
  if (storedLmHead) {
    const wte = layout.byName.get('transformer.wte.weight')!;
    const embedding = params.subarray(wte.offset, wte.offset + wte.size);
    for (let i = 0; i < embedding.length; i++) {
      if (!Object.is(embedding[i], storedLmHead[i])) {
        fail(
          'lm_head.weight differs from transformer.wte.weight but config.json says tie_word_embeddings is true',
        );
      }
    }
  }
  return params;
}

/**
 * Index of the first NaN or ±Infinity, or -1. Reads the bits (exponent all ones) without a branch or call
 * per value: this loop runs cold over every weight at each server start.
 */
function firstNonFinite(data: Float32Array): number {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const n = bits.length;
  let flags = 0;
  let i = 0;
  // (exponent bits) + 2^23 carries into bit 31 exactly when the exponent is all ones.
  for (; i + 4 <= n; i += 4) {
    flags |=
      ((bits[i] & 0x7f800000) + 0x00800000) |
      ((bits[i + 1] & 0x7f800000) + 0x00800000) |
      ((bits[i + 2] & 0x7f800000) + 0x00800000) |
      ((bits[i + 3] & 0x7f800000) + 0x00800000);
  }
  for (; i < n; i++) flags |= (bits[i] & 0x7f800000) + 0x00800000;
  if (flags >= 0) return -1;
  for (let j = 0; j < n; j++) if (!Number.isFinite(data[j])) return j;
  return -1;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function fmtShape(shape: number[]): string {
  return `[${shape.join(',')}]`;
}

/** config.json keys transformers writes as floats (Python prints them with a decimal point). */
const FLOAT_KEYS = new Set([
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
  'tokenizer.json',
  'vocab.json',
  'merges.txt',
  'tokenizer_config.json',
  'special_tokens_map.json',
  TOKENIZER_CACHE_FILE,
]);

/**
 * Writes a complete model directory atomically (built in a temp dir, then swapped in): config.json,
 * generation_config.json, model.safetensors, tokenizer files and their tables (tokenizer-tables.bin, when a tokenizer is given) and extra files.
 * The same inputs always give the same bytes.
 */
export async function saveModelDir(dir: string, options: SaveModelOptions): Promise<void> {
  const config = validateConfig(options.config);
  const weights = weightsToSafetensors(config, options.params);
  const extraFiles = Object.entries(options.extraFiles ?? {});
  for (const [name] of extraFiles) {
    if (name !== path.basename(name) || name === '.' || name === '..' || name.includes('\\') || name === '') {
      throw new Error(`extra file name ${JSON.stringify(name)} must be a plain file name`);
    }
    if (RESERVED_FILES.has(name)) throw new Error(`extra file ${name} would overwrite a model file`);
  }
  const configText = pythonJson(hfConfigFor(config, options.configOverrides));
  const generationText = pythonJson(options.generationConfig ?? defaultGenerationConfig(config));

  await writeDirAtomic(dir, async (tmp) => {
    await writeFileAtomic(path.join(tmp, CONFIG_FILE), configText);
    await writeFileAtomic(path.join(tmp, GENERATION_CONFIG_FILE), generationText);
    await writeFileAtomic(path.join(tmp, WEIGHTS_FILE), weights);
    if (options.tokenizerData) {
      await writeTokenizerFiles(tmp, options.tokenizerData, { modelMaxLength: config.nPositions });
      // The tables a server would build from those files, so it loads them instead of scanning the files.
      await writeTokenizerCache(tmp);
    }
    for (const [name, content] of extraFiles) await writeFileAtomic(path.join(tmp, name), content);
  });
}

/** JSON as Python's `json.dumps(obj, indent=2, sort_keys=True) + "\n"` prints it (how transformers saves configs). */
export function pythonJson(value: unknown): string {
  return `${pyValue(value, '', null)}\n`;
}

function pyValue(value: unknown, indent: string, key: string | null): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`cannot write ${value} for ${key} as JSON`);
    return Number.isInteger(value) && !(key && FLOAT_KEYS.has(key)) ? String(value) : pyFloat(value);
  }
  if (typeof value === 'string') return pyString(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => inner + pyValue(v, inner, null)).join(',\n')}\n${indent}]`;
  }
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort(compareCodePoints);
    if (keys.length === 0) return '{}';
    const body = keys.map(
      (k) => `${inner}${pyString(k)}: ${pyValue((value as Record<string, unknown>)[k], inner, k)}`,
    );
    return `{\n${body.join(',\n')}\n${indent}}`;
  }
  throw new Error(`cannot write a ${typeof value} as JSON`);
}

function compareCodePoints(a: string, b: string): number {
  const x = [...a].map((c) => c.codePointAt(0)!);
  const y = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** Python's float repr: shortest round-trip digits, exponent form below 1e-4 and from 1e16 on. */
export function pyFloat(x: number): string {
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, expText] = x.toExponential().split('e');
  const exp = Number(expText);
  if (exp < -4 || exp >= 16)
    return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  const text = String(x);
  return text.includes('.') ? text : `${text}.0`;
}

/** JSON string with Python's ensure_ascii escaping (everything outside space..tilde as \uXXXX). */
function pyString(s: string): string {
  return JSON.stringify(s).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
