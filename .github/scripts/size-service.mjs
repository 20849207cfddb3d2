#!/usr/bin/env node
// Sizes the Cloud Run service for the model an image serves: CPUs and memory from the model's weights and shape,
// by the rule docs/deploy.md states (terraform/sizing.tf checks the same rule before anything is deployed).
//
//   size-service.mjs MODEL_DIR [--quantize q8_0] [--cpu N] [--memory Q]
//
// MODEL_DIR holds the image's /app/model: config.json and model.safetensors (only its header is read), or, for a
// model stored as int8 (create-model --quantize q8_0), config.json and model.q8_0.gguf (the count comes from
// config.json's shape). Prints one JSON object: the parameter count, the weights' format, the bytes the rule uses,
// and the cpu/memory to deploy. --quantize q8_0 sizes float32 weights quantised to int8 as the server loads them. --cpu or --memory choose a value instead of the
// smallest that fits; a choice too small for the model, or a combination Cloud Run refuses, is an error (exit 1,
// one line naming it). Plain Node, no dependencies: the build job runs it without `npm ci`.
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const MIB = 1024 * 1024;

/**
 * The rule (docs/deploy.md, "Sizing"; terraform/sizing.tf applies the same): a base for Node, the HTTP stack and
 * the tokenizer; the weights as they are resident at their peak (float32: the loaded parameters and the copy the
 * inference weights are placed in; q8_0: the float32 load plus the int8 blocks); per generation worker (one per
 * vCPU) its session, the KV cache and activations for the whole context, plus the thread's own heap; and
 * headroom on top of all that for the garbage collector and request bursts.
 */
export const RULE = { baseMib: 128, workerThreadMib: 16, headroom: 1.25, roundMib: 256 };

/**
 * Bytes per parameter resident at the load's peak, by how the weights are held: float32 (the loaded parameters
 * and their placed copy), float32 quantised at load (the float32 load plus the int8 blocks), and int8 as stored
 * in model.q8_0.gguf (the file read whole, the blocks placed, and a transient copy while placing them).
 */
export const WEIGHT_BYTES_PER_PARAMETER = { f32: 8, q8_0: 4 + 34 / 32, q8_0_stored: 3 * (34 / 32) };

/** The weight files a model directory may hold (create-model writes one of them). */
const SAFETENSORS_FILE = 'model.safetensors';
const Q8_FILE = 'model.q8_0.gguf';

/** Cloud Run's CPU counts and the memory each allows, in MiB (https://cloud.google.com/run/docs/configuring/services/cpu). */
export const CLOUD_RUN = [
  { cpu: 1, minMib: 512, maxMib: 4 * 1024 },
  { cpu: 2, minMib: 512, maxMib: 8 * 1024 },
  { cpu: 4, minMib: 2 * 1024, maxMib: 16 * 1024 },
  { cpu: 6, minMib: 4 * 1024, maxMib: 24 * 1024 },
  { cpu: 8, minMib: 4 * 1024, maxMib: 32 * 1024 },
];

export class SizingError extends Error {
  name = 'SizingError';
}

/** Memory in MiB of a Kubernetes quantity as Cloud Run takes it: NMi or NGi. */
export function memoryMib(quantity) {
  const m = /^([1-9][0-9]*)(Mi|Gi)$/.exec(quantity);
  if (!m) throw new SizingError(`memory ${JSON.stringify(quantity)} is not a quantity such as 512Mi or 2Gi`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
}

/** The memory, in MiB, that the model needs with `workers` generation workers (the rule; before rounding). */
export function neededMib(weightsBytes, workerBytes, workers) {
  return Math.ceil((RULE.baseMib + (weightsBytes + workers * workerBytes) / MIB) * RULE.headroom);
}

/**
 * CPUs and memory for a model: the fewest CPUs whose memory range holds what the model needs with one worker
 * per CPU, and that need rounded up to RULE.roundMib (at least the range's minimum). `cpu` / `memory` choose
 * instead; they must still hold the model and be a combination Cloud Run allows.
 */
export function sizeService({ weightsBytes, workerBytes }, choice = {}) {
  const options = choice.cpu === undefined ? CLOUD_RUN : CLOUD_RUN.filter((o) => o.cpu === choice.cpu);
  if (options.length === 0)
    throw new SizingError(
      `cpu ${choice.cpu} is not one Cloud Run offers (${CLOUD_RUN.map((o) => o.cpu).join(', ')})`,
    );
  const wanted = choice.memory === undefined ? null : memoryMib(choice.memory);
  for (const { cpu, minMib, maxMib } of options) {
    const need = neededMib(weightsBytes, workerBytes, cpu);
    const mib = wanted ?? Math.max(minMib, Math.ceil(need / RULE.roundMib) * RULE.roundMib);
    if (mib < need)
      throw new SizingError(
        `memory ${choice.memory} is too small for this model with ${cpu} CPU: it needs ${need} MiB ` +
          `(${ruleText(weightsBytes, workerBytes, cpu)})`,
      );
    // Outside this CPU count's range: more CPUs (and so workers) may fit it.
    if (mib < minMib || mib > maxMib) continue;
    const memory = mib % 1024 === 0 ? `${mib / 1024}Gi` : `${mib}Mi`;
    return { cpu: String(cpu), workers: cpu, memory, memory_mib: mib, needed_mib: need };
  }
  if (choice.cpu !== undefined) {
    const { minMib, maxMib } = options[0];
    const mib = wanted ?? neededMib(weightsBytes, workerBytes, choice.cpu);
    throw new SizingError(
      `${choice.cpu} CPU takes ${minMib}-${maxMib} MiB on Cloud Run; ${wanted !== null ? `memory ${choice.memory}` : `this model's ${mib} MiB`} is outside it`,
    );
  }
  if (wanted !== null)
    throw new SizingError(`memory ${choice.memory} fits no CPU count Cloud Run offers for this model`);
  const need = neededMib(weightsBytes, workerBytes, 8);
  throw new SizingError(`this model needs ${need} MiB with 8 CPUs, more than Cloud Run's 32 GiB`);
}

function ruleText(weightsBytes, workerBytes, workers) {
  return `${RULE.baseMib} MiB + ${(weightsBytes / MIB).toFixed(0)} MiB of weights + ${workers} × ${(workerBytes / MIB).toFixed(0)} MiB per worker, plus ${Math.round((RULE.headroom - 1) * 100)}%`;
}

/** The safetensors header of a file: name → { dtype, shape, data_offsets }. Reads only the header. */
function safetensorsHeader(file) {
  const fd = openSync(file, 'r');
  try {
    const size = Buffer.alloc(8);
    if (readSync(fd, size, 0, 8, 0) !== 8)
      throw new SizingError(`${file}: shorter than a safetensors header`);
    const length = size.readBigUInt64LE(0);
    if (length > 100_000_000n) throw new SizingError(`${file}: header of ${length} bytes is not plausible`);
    const header = Buffer.alloc(Number(length));
    if (readSync(fd, header, 0, header.length, 8) !== header.length)
      throw new SizingError(`${file}: truncated header`);
    return JSON.parse(header.toString('utf8'));
  } finally {
    closeSync(fd);
  }
}

/** GPT-2's parameter count from its shape: embeddings, 12·C² + 13·C per block, the final norm, an untied head. */
export function gpt2Parameters({ nLayer, nEmbd, nPositions, vocab, tied }) {
  return (
    vocab * nEmbd +
    nPositions * nEmbd +
    nLayer * (12 * nEmbd * nEmbd + 13 * nEmbd) +
    2 * nEmbd +
    (tied ? 0 : vocab * nEmbd)
  );
}

/**
 * What the rule needs from a model directory as create-model writes it: the parameter count (every tensor of
 * model.safetensors, or config.json's shape for model.q8_0.gguf), the weights' format (`quantize` for float32
 * weights, q8_0 for a directory stored as int8), the bytes the weights take at their peak as they are held, and a
 * worker's bytes: its session (KV cache of 2·n_layer rows and 15 activation rows of n_embd floats per position,
 * and the logits) and its thread.
 */
export function modelFacts(dir, quantize = 'f32') {
  if (quantize !== 'f32' && quantize !== 'q8_0')
    throw new SizingError(`quantize ${JSON.stringify(quantize)}: expected q8_0 or nothing`);
  const stored = existsSync(join(dir, Q8_FILE));
  if (stored && existsSync(join(dir, SAFETENSORS_FILE)))
    throw new SizingError(`${dir}: holds both ${SAFETENSORS_FILE} and ${Q8_FILE}; the server refuses it`);
  const format = stored ? 'q8_0' : quantize;
  const perParameter = WEIGHT_BYTES_PER_PARAMETER[stored ? 'q8_0_stored' : quantize];
  let config;
  try {
    config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  } catch (err) {
    throw new SizingError(`${join(dir, 'config.json')}: ${err.message}`);
  }
  const nLayer = config.n_layer;
  const nEmbd = config.n_embd;
  const nPositions = config.n_positions ?? config.n_ctx;
  const vocab = config.vocab_size;
  for (const [name, v] of Object.entries({
    n_layer: nLayer,
    n_embd: nEmbd,
    n_positions: nPositions,
    vocab_size: vocab,
  }))
    if (!Number.isSafeInteger(v) || v <= 0)
      throw new SizingError(`config.json: ${name} ${JSON.stringify(v)} is not a positive integer`);
  let parameters = 0;
  if (stored) {
    const tied = config.tie_word_embeddings ?? true;
    if (typeof tied !== 'boolean')
      throw new SizingError(`config.json: tie_word_embeddings ${JSON.stringify(tied)} is not a boolean`);
    parameters = gpt2Parameters({ nLayer, nEmbd, nPositions, vocab, tied });
  } else {
    const header = safetensorsHeader(join(dir, SAFETENSORS_FILE));
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      if (!Array.isArray(entry?.shape))
        throw new SizingError(`model.safetensors: tensor ${name} has no shape`);
      parameters += entry.shape.reduce((a, b) => a * b, 1);
    }
  }
  const weightsBytes = Math.ceil(parameters * perParameter);
  const workerBytes = ((2 * nLayer + 15) * nPositions * nEmbd + vocab) * 4 + RULE.workerThreadMib * MIB;
  return { parameters, format, weightsBytes, workerBytes };
}

function main(argv) {
  const [dir, ...rest] = argv;
  if (!dir || dir.startsWith('-'))
    throw new SizingError('usage: size-service.mjs MODEL_DIR [--quantize q8_0] [--cpu N] [--memory Q]');
  const choice = {};
  for (let i = 0; i < rest.length; i += 2) {
    const [flag, value] = [rest[i], rest[i + 1]];
    if (value === undefined || value === '') continue;
    if (flag === '--cpu') choice.cpu = Number(value);
    else if (flag === '--memory') choice.memory = value;
    else if (flag === '--quantize') choice.quantize = value;
    else throw new SizingError(`unknown option ${flag}`);
  }
  const { quantize, ...resources } = choice;
  const facts = modelFacts(dir, quantize ?? 'f32');
  const size = sizeService(facts, resources);
  return {
    parameters: facts.parameters,
    weights_format: facts.format,
    weights_bytes: facts.weightsBytes,
    worker_bytes: facts.workerBytes,
    ...size,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    process.stdout.write(`${JSON.stringify(main(process.argv.slice(2)))}\n`);
  } catch (err) {
    process.stderr.write(`size-service: ${err instanceof SizingError ? err.message : err.stack}\n`);
    process.exit(1);
  }
}
