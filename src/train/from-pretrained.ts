// What `create-model --from-pretrained` does: make the source a local, verified Hugging Face directory, load
// it (validated, converted to float32), optionally fine-tune it on the corpus, evaluate and gate it, and
// write our model directory atomically with a model card that records the source and its revision.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import type { GPTConfig } from '../engine/config.js';
import { parameterLayout } from '../engine/layout.js';
import { GPT2 } from '../engine/model.js';
import { type LoadedModelDir, loadModelDir, saveModelDir } from '../io/checkpoint.js';
import { GcsFetchError } from '../io/gcs-fetch.js';
import { HubDownloadError } from '../io/hub-download.js';
import {
  type ModelSource,
  ModelSourceError,
  removeStaging,
  resolveModelSource,
  stagingDirFor,
} from '../io/model-source.js';
import { defaultTokenizerData } from '../io/tokenizer-files.js';
import { Gpt2Tokenizer } from '../tokenizer/gpt2-bpe.js';
import { QualityGateError, sha256Hex } from './build.js';
import { splitLines } from './corpus.js';
import { type EvalResult, evaluateLines } from './evaluate.js';
import type { HyperParams } from './presets.js';
import { lossCurveSvg } from './report.js';
import { TRAINER_VERSION, type TrainProgress, type TrainResult, train } from './trainer.js';

/** GPT-2's vocabulary: a checkpoint of this size without tokenizer files gets GPT-2's own tokenizer. */
const GPT2_VOCAB = 50257;

/** config.json fields that describe the stored file, not the model; ours are written anew. */
const DROPPED_CONFIG_FIELDS = [
  '_name_or_path',
  'architectures',
  'torch_dtype',
  'dtype',
  'transformers_version',
  'quantization_config',
];

export interface PretrainedOptions {
  source: ModelSource;
  modelDir: string;
  train: boolean;
  hyper: HyperParams;
  /** False when hyper.seqLen is the default: it is then cut to the model's context. */
  seqLenExplicit?: boolean;
  seed: number;
  /** Corpus text and where it came from (needed with train or maxLoss). */
  data: { file: string; text: string } | null;
  systemPrompt: string | null;
  maxLoss: number | null;
  /** How the model dir stores the weights: float32 model.safetensors (the default), or int8 model.q8_0.gguf. */
  weights?: 'f32' | 'q8_0';
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
  onProgress?: (p: TrainProgress) => void;
}

export interface PretrainedOutcome {
  source: 'pretrained' | 'fine-tuned';
  record: Record<string, unknown>;
  evalLoss: number | null;
  parameters: number;
}

/** A source that could not be made into a model: one line for the user, nothing written. */
export class PretrainedError extends Error {
  override name = 'PretrainedError';
}

export async function createFromPretrained(o: PretrainedOptions): Promise<PretrainedOutcome> {
  const staging = stagingDirFor(o.modelDir);
  let local: Awaited<ReturnType<typeof resolveModelSource>>;
  try {
    local = await resolveModelSource(o.source, { stagingDir: staging, env: o.env, log: o.log });
  } catch (err) {
    // A partial download is kept for the next run to resume; anything else leaves nothing behind.
    if (!(err instanceof HubDownloadError && err.resumable)) await removeStaging(staging);
    if (err instanceof HubDownloadError || err instanceof GcsFetchError || err instanceof ModelSourceError) {
      throw new PretrainedError(err.message);
    }
    throw err;
  }

  // Problems inside a downloaded copy are named by the source, not by the staging path.
  const label = o.source.kind === 'dir' ? null : sourceLabel(local.record);
  let loaded: LoadedModelDir;
  try {
    loaded = await loadModelDir(local.dir, { requireTokenizer: false });
  } catch (err) {
    if (o.source.kind !== 'dir') await removeStaging(staging);
    // Checkpoint and tokenizer problems alike name their file; a downloaded copy's by its source.
    if (err instanceof Error) {
      const where = label ? err.message.split(local.dir).join(label) : err.message;
      throw new PretrainedError(where);
    }
    throw err;
  }
  const config = loaded.config;
  const parameters = parameterLayout(config).total;
  const converted = loaded.storedDtypes.filter((d) => d !== 'F32');
  o.log(
    `loaded ${o.source.spec}: ${config.nLayer} layers, n_embd ${config.nEmbd}, ${config.nHead} heads, ` +
      `context ${config.nPositions}, vocab ${config.vocabSize}, ${parameters} parameters` +
      (converted.length > 0 ? ` (stored as ${loaded.storedDtypes.join('/')}, converted to F32)` : ''),
  );

  let tokenizerData = loaded.tokenizerData;
  if (!tokenizerData && config.vocabSize === GPT2_VOCAB) {
    o.log(`${o.source.spec} has no tokenizer files: using GPT-2's tokenizer (vocab_size ${GPT2_VOCAB})`);
    tokenizerData = await defaultTokenizerData();
  }
  const needData = o.train || o.maxLoss !== null;
  if (needData && !tokenizerData) {
    throw new PretrainedError(
      `${o.source.spec}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt), and vocab_size ` +
        `${config.vocabSize} is not GPT-2's: cannot encode the corpus to ${o.train ? 'train' : 'evaluate'}`,
    );
  }
  if (o.weights === 'q8_0' && (!tokenizerData || config.nEmbd % 32 !== 0)) {
    if (o.source.kind !== 'dir') await removeStaging(staging);
    throw new PretrainedError(
      `${o.source.spec}: --quantize q8_0 needs ${!tokenizerData ? 'tokenizer files (the GGUF it writes holds the tokenizer)' : `n_embd a multiple of 32 (Q8_0 blocks), got ${config.nEmbd}`}`,
    );
  }
  if (!tokenizerData) {
    o.log(
      `warning: ${o.source.spec} has no tokenizer files and vocab_size ${config.vocabSize} is not GPT-2's: ` +
        'the model is written without a tokenizer (add tokenizer files before serving it)',
    );
  }

  const sourceSha256 = local.sha256 ?? (await hashFiles(loaded));
  const record = {
    ...local.record,
    stored_dtypes: loaded.storedDtypes,
    files_sha256: sourceSha256,
    weights_format: o.weights ?? 'f32',
  };

  let params = loaded.params;
  let result: TrainResult | null = null;
  let evaluation: EvalResult | null = null;
  const tokenizer = tokenizerData ? new Gpt2Tokenizer(tokenizerData) : null;
  const hyper =
    o.seqLenExplicit === false
      ? { ...o.hyper, seqLen: Math.min(o.hyper.seqLen, config.nPositions) }
      : o.hyper;
  if (o.train && o.data && tokenizer) {
    if (hyper.seqLen > config.nPositions)
      throw new PretrainedError(
        `--seq-len ${hyper.seqLen} exceeds the model's context of ${config.nPositions}`,
      );
    o.log(
      `fine-tuning ${o.source.spec} on ${o.data.file}: ${hyper.steps} steps of ${hyper.batchSize}×${hyper.seqLen} tokens, ` +
        `lr ${hyper.lr}, full ${config.vocabSize}-way softmax, seed ${o.seed}`,
    );
    try {
      result = train({
        config,
        hyper,
        seed: o.seed,
        text: o.data.text,
        systemPrompt: o.systemPrompt,
        tokenizer,
        onProgress: o.onProgress,
        initialParams: loaded.params,
      });
    } catch (err) {
      if (err instanceof RangeError) throw new PretrainedError(`${o.source.spec}: ${err.message}`);
      throw err;
    }
    params = result.params;
  }
  if (o.data && tokenizer && needData) {
    const t0 = performance.now();
    evaluation = evaluateLines(new GPT2(config, params), tokenizer, o.data.text);
    o.log(
      `eval on ${o.data.file}: ${evaluation.loss.toFixed(4)} nats/token over ${evaluation.tokens} tokens of ` +
        `${evaluation.lines} lines in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  }
  if (o.maxLoss !== null && evaluation && !(evaluation.loss <= o.maxLoss)) {
    throw new QualityGateError(
      `quality gate failed: eval loss ${evaluation.loss.toFixed(4)} nats/token is above --max-loss ${o.maxLoss} (${o.source.spec}; nothing was written)`,
    );
  }

  const extraFiles: Record<string, string> = {
    'source.json': `${JSON.stringify(record, null, 2)}\n`,
    'README.md': pretrainedCard({
      spec: o.source.spec,
      record,
      config,
      parameters,
      storedDtypes: loaded.storedDtypes,
      tokenizer: loaded.tokenizerData ? 'source' : tokenizerData ? 'gpt2' : 'none',
      fineTune: result && o.data ? { hyper, result, dataFile: path.basename(o.data.file) } : null,
      evalLoss: evaluation?.loss ?? null,
      seed: o.seed,
    }),
  };
  if (result && o.data) {
    const tail = result.losses.slice(-Math.min(20, result.losses.length));
    const finalTrainLoss = tail.reduce((a, b) => a + b, 0) / tail.length;
    const report = {
      source: record,
      trainer_version: TRAINER_VERSION,
      preset: 'fine-tune',
      trained: true,
      seed: o.seed,
      config,
      hyper_parameters: hyper,
      parameters,
      data_file: o.data.file,
      corpus_sha256: sha256Hex(o.data.text),
      corpus_lines: splitLines(o.data.text).length,
      system_prompt_sha256: o.systemPrompt !== null ? sha256Hex(o.systemPrompt) : null,
      training_tokens: result.corpusTokens,
      training_vocab_size: result.trainingVocabSize,
      steps: result.steps,
      tokens_seen: result.tokensSeen,
      wall_time_s: Math.round(result.wallTimeS * 1000) / 1000,
      tokens_per_s: Math.round(result.tokensPerS),
      final_train_loss: finalTrainLoss,
      final_loss: evaluation?.loss ?? finalTrainLoss,
      eval_loss: evaluation?.loss ?? null,
      eval_tokens: evaluation?.tokens ?? null,
      losses: result.losses.map((l) => Math.round(l * 1e5) / 1e5),
    };
    extraFiles['training.json'] = `${JSON.stringify(report, null, 2)}\n`;
    extraFiles['loss-curve.svg'] = lossCurveSvg(result.losses, {
      title: `fine-tuning ${o.source.spec}: training loss per step`,
      evalLoss: evaluation?.loss,
    });
  }

  const overrides: Record<string, unknown> = { ...loaded.hfConfig };
  for (const key of DROPPED_CONFIG_FIELDS) delete overrides[key];
  await saveModelDir(o.modelDir, {
    config,
    params,
    tokenizerData,
    generationConfig: loaded.generationConfig ?? undefined,
    configOverrides: overrides,
    extraFiles,
    weights: o.weights ?? 'f32',
  });
  o.log(`model written to ${o.modelDir}`);
  if (o.source.kind !== 'dir') await removeStaging(staging);
  return {
    source: result ? 'fine-tuned' : 'pretrained',
    record,
    evalLoss: evaluation?.loss ?? null,
    parameters,
  };
}

/** `hf:ORG/NAME@COMMIT` or the gs:// URI, for messages about files of a downloaded copy. */
function sourceLabel(record: Record<string, unknown>): string {
  return typeof record.commit === 'string' ? `${record.uri}@${record.commit}` : String(record.uri);
}

/** sha256 of config.json and the weight files of a local source, for the model card. */
async function hashFiles(loaded: LoadedModelDir): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const file of [path.join(loaded.dir, 'config.json'), ...loaded.weightFiles]) {
    const h = createHash('sha256');
    for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
    out[path.basename(file)] = h.digest('hex');
  }
  return out;
}

interface CardInput {
  spec: string;
  record: Record<string, unknown>;
  config: Readonly<GPTConfig>;
  parameters: number;
  storedDtypes: string[];
  tokenizer: 'source' | 'gpt2' | 'none';
  fineTune: { hyper: HyperParams; result: TrainResult; dataFile: string } | null;
  evalLoss: number | null;
  seed: number;
}

/** The README.md of a model made from a pretrained source: where it came from, at which revision, how. */
function pretrainedCard(c: CardInput): string {
  const r = c.record;
  const lines = [
    '# tiny-llm model (from a pretrained checkpoint)',
    '',
    r.weights_format === 'q8_0'
      ? `Made by \`tiny-llm create-model --from-pretrained ${c.spec}${c.fineTune ? ' --train' : ''} --quantize q8_0\`: a Hugging Face \`GPT2LMHeadModel\` directory whose weights are stored as int8 in \`model.q8_0.gguf\` (Q8_0 GGUF: blocks of 32 int8 with one f16 scale; norms, biases and positions float32).`
      : `Made by \`tiny-llm create-model --from-pretrained ${c.spec}${c.fineTune ? ' --train' : ''}\`: a Hugging Face \`GPT2LMHeadModel\` directory with float32 safetensors weights.`,
    '',
    '## Source',
    '',
    '| field | value |',
    '| --- | --- |',
    `| source | \`${String(r.uri)}\` |`,
  ];
  if (r.revision !== undefined) lines.push(`| revision asked for | \`${String(r.revision)}\` |`);
  if (r.commit !== undefined) lines.push(`| commit downloaded | \`${String(r.commit)}\` |`);
  if (r.endpoint !== undefined) lines.push(`| endpoint | ${String(r.endpoint)} |`);
  lines.push(
    `| stored as | ${c.storedDtypes.join(', ')}${c.storedDtypes.some((d) => d !== 'F32') ? ' (converted to F32 here)' : ''} |`,
    `| tokenizer | ${c.tokenizer === 'source' ? "the source's" : c.tokenizer === 'gpt2' ? "GPT-2's (the source had no tokenizer files)" : 'none (the source had none; add tokenizer files before serving)'} |`,
  );
  for (const [file, digest] of Object.entries((r.files_sha256 ?? {}) as Record<string, string>))
    lines.push(`| sha256 of ${file} | \`${digest}\` |`);
  lines.push(
    '',
    '## Configuration',
    '',
    '| field | value |',
    '| --- | --- |',
    `| vocabulary | ${c.config.vocabSize} |`,
    `| context (n_positions) | ${c.config.nPositions} |`,
    `| n_embd / n_layer / n_head | ${c.config.nEmbd} / ${c.config.nLayer} / ${c.config.nHead} |`,
    `| parameters | ${c.parameters}${c.config.tieWordEmbeddings ? ' (LM head tied to the token embedding)' : ' (separate LM head)'} |`,
    '',
  );
  if (c.fineTune) {
    const h = c.fineTune.hyper;
    const t = c.fineTune.result;
    lines.push(
      '## Fine-tuning',
      '',
      `- Data: \`${c.fineTune.dataFile}\`, ${t.corpusTokens} tokens; batches of ${h.batchSize} windows of ${h.seqLen} tokens from line starts, ${t.steps} steps, seed ${c.seed}.`,
      `- AdamW lr ${h.lr} (${h.warmup} warmup steps, cosine to ${h.lr * h.minLrRatio}), weight decay ${h.weightDecay}, gradient clip ${h.gradClip || 'off'}; the full ${c.config.vocabSize}-way softmax.`,
      `- ${t.steps} steps in ${t.wallTimeS.toFixed(1)} s (${Math.round(t.tokensPerS)} tokens/s); the loss curve is in \`loss-curve.svg\`, every step's loss in \`training.json\`.`,
      '',
    );
  }
  if (c.evalLoss !== null) {
    lines.push(
      '## Quality',
      '',
      `- Per-token loss on the corpus, as \`tiny-llm eval\` computes it: **${c.evalLoss.toFixed(4)} nats**.`,
      '',
    );
  }
  lines.push(
    '## Use',
    '',
    '```sh',
    'npx tiny-llm serve --model-dir model   # OpenAI-compatible API and chat page',
    '```',
    '',
    "The model's licence and limitations are those of its source.",
    '',
  );
  return lines.join('\n');
}
