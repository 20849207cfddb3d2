// `tiny-llm create-model`: write a random-init model (like the original) or train one, with reuse by content key.
import path from 'node:path';
import { readOptionalTextFile, readTextFile } from '../../io/dataset.js';
import { ModelSourceError, parseModelSource } from '../../io/model-source.js';
import { defaultTokenizerData } from '../../io/tokenizer-files.js';
import { buildModel, QualityGateError } from '../../train/build.js';
import { FINETUNE_HYPER, type HyperParams, PRESETS } from '../../train/presets.js';
import { progressReporter } from '../../train/progress.js';
import { type Command, numberArg, parseCommandArgs, UsageError } from '../command.js';

const usage = `usage: tiny-llm create-model [--train] [--force-train] [--data-file F] [--model-dir D]
                         [--preset seed|default] [--cache URI] [--max-loss X] [--seed N] [--quantize q8_0]
                         [overrides]
       tiny-llm create-model --from-pretrained SOURCE [--revision R] [--train] [--max-loss X] [--model-dir D]
                         [--data-file F] [--seed N] [--quantize q8_0] [training overrides]

  --train               train the model (without it: a random-init model, like the original project)
  --force-train         rebuild even when the model dir or the cache holds a model for the same inputs
  --data-file F         training corpus (default data/training_data.txt)
  --system-prompt-file F  system prompt put before dialogue blocks (default: system_prompt.txt beside F)
  --model-dir D         where the Hugging Face model directory is written (default model)
  --preset P            seed (the original recipe) or default (what we ship; the default)
  --cache URI           file://DIR or gs://BUCKET/PREFIX: reuse a model trained from the same inputs, store new ones
  --max-loss X          fail (exit 1, nothing written) when the eval loss on the data file is above X nats/token
  --seed N              seed for init, data order and dropout (default 1234)
  --from-pretrained SOURCE  start from a pretrained GPT-2: hf:ORG/NAME[@REVISION] (the Hugging Face Hub;
                        HF_ENDPOINT, HF_TOKEN and HF_HUB_DOWNLOAD_TIMEOUT are honoured), a Hugging Face model
                        directory, or gs://BUCKET/PREFIX; with --train it is fine-tuned on the data file
  --revision R          branch, tag or commit of an hf: source (default main; recorded in the model card)
  --quantize q8_0       store the weights as int8: model.q8_0.gguf (Q8_0 GGUF, ~1.06 bytes per weight) instead
                        of float32 model.safetensors; serve, start, generate and eval load it as Q8_0. Training
                        and --max-loss use the float32 weights; needs n_embd a multiple of 32

overrides (of the preset):
  --n-embd N  --n-layer N  --n-head N  --n-positions N
  --steps N  --epochs N  --batch-size N  --seq-len N  --lr X  --warmup N  --min-lr-ratio X
  --weight-decay X  --grad-clip X  --dropout X  --full-vocab (train with the full 50 257-way softmax)`;

const options = {
  train: { type: 'boolean' },
  'force-train': { type: 'boolean' },
  'data-file': { type: 'string' },
  'system-prompt-file': { type: 'string' },
  'model-dir': { type: 'string' },
  preset: { type: 'string' },
  cache: { type: 'string' },
  'max-loss': { type: 'string' },
  seed: { type: 'string' },
  'n-embd': { type: 'string' },
  'n-layer': { type: 'string' },
  'n-head': { type: 'string' },
  'n-positions': { type: 'string' },
  steps: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  'seq-len': { type: 'string' },
  lr: { type: 'string' },
  warmup: { type: 'string' },
  'min-lr-ratio': { type: 'string' },
  'weight-decay': { type: 'string' },
  'grad-clip': { type: 'string' },
  dropout: { type: 'string' },
  'full-vocab': { type: 'boolean' },
  'from-pretrained': { type: 'string' },
  revision: { type: 'string' },
  quantize: { type: 'string' },
} as const;

/** Flags that shape or key a model trained from scratch, which a pretrained source decides instead. */
const SCRATCH_ONLY = [
  'preset',
  'cache',
  'force-train',
  'n-embd',
  'n-layer',
  'n-head',
  'n-positions',
  'full-vocab',
  'epochs',
] as const;

export const command: Command = {
  name: 'create-model',
  summary: 'write a random-init model or train one (build time)',
  usage,
  async run(argv) {
    const { values: v } = parseCommandArgs(argv, options);
    const weights = weightsFormat(v);
    if (v['from-pretrained'] !== undefined) return fromPretrained(v, weights);
    if (v.revision !== undefined) throw new UsageError('--revision needs --from-pretrained');
    const presetName = v.preset ?? 'default';
    if (presetName !== 'seed' && presetName !== 'default')
      throw new UsageError(`--preset must be seed or default, got "${presetName}"`);
    const preset = PRESETS[presetName];
    const int = (flag: string, min = 1, max = 1e9) =>
      numberArg(flag, v[flag as keyof typeof v] as string | undefined, { integer: true, min, max });
    const num = (flag: string, min = 0, max = Number.MAX_VALUE) =>
      numberArg(flag, v[flag as keyof typeof v] as string | undefined, { min, max });

    const config = { ...preset.config };
    config.nEmbd = int('n-embd', 1, 4096) ?? config.nEmbd;
    config.nLayer = int('n-layer', 1, 64) ?? config.nLayer;
    config.nHead = int('n-head', 1, 256) ?? config.nHead;
    config.nPositions = int('n-positions', 2, 8192) ?? config.nPositions;
    if (config.nEmbd % config.nHead !== 0)
      throw new UsageError(`--n-embd (${config.nEmbd}) must be divisible by --n-head (${config.nHead})`);
    if (weights === 'q8_0' && config.nEmbd % 32 !== 0)
      throw new UsageError(
        `--quantize q8_0 needs --n-embd a multiple of 32 (Q8_0 blocks of 32), got ${config.nEmbd}`,
      );

    const hyper = hyperFrom(v, preset.hyper);
    hyper.epochs = int('epochs') ?? hyper.epochs;
    if (v['full-vocab']) hyper.restrictVocab = false;
    if (v.train && hyper.seqLen > config.nPositions)
      throw new UsageError(
        `--seq-len ${hyper.seqLen} exceeds the context (--n-positions ${config.nPositions})`,
      );
    const seed = int('seed', 0, 2 ** 53 - 1) ?? 1234;
    const maxLoss = num('max-loss', 0) ?? null;
    const cacheUri = v.cache ?? null;
    if (cacheUri !== null && !/^(file|gs):\/\//.test(cacheUri))
      throw new UsageError(`--cache must be file://DIR or gs://BUCKET/PREFIX, got "${cacheUri}"`);
    const train = v.train === true;
    if (v['force-train'] && !train) throw new UsageError('--force-train needs --train');

    const dataFile = v['data-file'] ?? path.join('data', 'training_data.txt');
    const needData = train || maxLoss !== null;
    const data = needData ? { file: dataFile, text: await readTextFile(dataFile, 'data file') } : null;
    const promptFile = v['system-prompt-file'] ?? path.join(path.dirname(dataFile), 'system_prompt.txt');
    const systemPrompt =
      needData && hyper.systemPromptInDialogues
        ? v['system-prompt-file'] !== undefined
          ? (await readTextFile(promptFile, 'system prompt file')).trim()
          : ((await readOptionalTextFile(promptFile, 'system prompt file'))?.trim() ?? null)
        : null;

    const log = (line: string) => process.stderr.write(`${line}\n`);
    try {
      const outcome = await buildModel({
        preset: presetName,
        config,
        hyper,
        seed,
        train,
        forceTrain: v['force-train'] === true,
        modelDir: v['model-dir'] ?? 'model',
        data,
        systemPrompt,
        tokenizerData: await defaultTokenizerData(),
        cacheUri,
        maxLoss,
        weights,
        log,
        onProgress: progressReporter(process.stderr),
      });
      process.stdout.write(
        `${JSON.stringify({ model_dir: v['model-dir'] ?? 'model', source: outcome.source, key: outcome.key, eval_loss: outcome.evalLoss, weights })}\n`,
      );
      return 0;
    } catch (err) {
      if (err instanceof QualityGateError) {
        log(`tiny-llm create-model: ${err.message}`);
        return 1;
      }
      throw err;
    }
  },
};

type Values = ReturnType<typeof parseCommandArgs<typeof options>>['values'];

/** How the weights are stored: float32 safetensors, or int8 (--quantize q8_0). */
function weightsFormat(v: Values): 'f32' | 'q8_0' {
  if (v.quantize === undefined) return 'f32';
  if (v.quantize !== 'q8_0') throw new UsageError(`--quantize must be q8_0, got "${v.quantize}"`);
  return 'q8_0';
}

/** The hyper-parameter flags shared by both modes, applied over `base`. */
function hyperFrom(v: Values, base: HyperParams): HyperParams {
  const int = (flag: string, min = 1, max = 1e9) =>
    numberArg(flag, v[flag as keyof Values] as string | undefined, { integer: true, min, max });
  const num = (flag: string, min = 0, max = Number.MAX_VALUE) =>
    numberArg(flag, v[flag as keyof Values] as string | undefined, { min, max });
  const hyper = { ...base, dropout: { ...base.dropout } };
  hyper.steps = int('steps') ?? hyper.steps;
  hyper.batchSize = int('batch-size', 1, 4096) ?? hyper.batchSize;
  hyper.seqLen = int('seq-len', 2) ?? hyper.seqLen;
  hyper.lr = num('lr', Number.MIN_VALUE, 10) ?? hyper.lr;
  hyper.warmup = int('warmup', 0) ?? hyper.warmup;
  hyper.minLrRatio = num('min-lr-ratio', 0, 1) ?? hyper.minLrRatio;
  hyper.weightDecay = num('weight-decay', 0, 10) ?? hyper.weightDecay;
  hyper.gradClip = num('grad-clip', 0) ?? hyper.gradClip;
  const dropout = num('dropout', 0, 0.99);
  if (dropout !== undefined) hyper.dropout = { embd: dropout, attn: dropout, resid: dropout };
  return hyper;
}

/** `create-model --from-pretrained SOURCE`: import (and optionally fine-tune) a pretrained GPT-2. */
async function fromPretrained(v: Values, weights: 'f32' | 'q8_0'): Promise<number> {
  for (const flag of SCRATCH_ONLY) {
    if (v[flag] !== undefined)
      throw new UsageError(`--${flag} does not apply with --from-pretrained (the source decides the model)`);
  }
  let source: ReturnType<typeof parseModelSource>;
  try {
    source = parseModelSource(v['from-pretrained'] ?? '', v.revision ?? null);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const train = v.train === true;
  const hyper = hyperFrom(v, FINETUNE_HYPER);
  const seed = numberArg('seed', v.seed, { integer: true, min: 0, max: 2 ** 53 - 1 }) ?? 1234;
  const maxLoss = numberArg('max-loss', v['max-loss'], { min: 0 }) ?? null;
  const dataFile = v['data-file'] ?? path.join('data', 'training_data.txt');
  const needData = train || maxLoss !== null;
  const data = needData ? { file: dataFile, text: await readTextFile(dataFile, 'data file') } : null;
  const promptFile = v['system-prompt-file'] ?? path.join(path.dirname(dataFile), 'system_prompt.txt');
  const systemPrompt =
    train && hyper.systemPromptInDialogues
      ? v['system-prompt-file'] !== undefined
        ? (await readTextFile(promptFile, 'system prompt file')).trim()
        : ((await readOptionalTextFile(promptFile, 'system prompt file'))?.trim() ?? null)
      : null;
  const modelDir = v['model-dir'] ?? 'model';
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const { createFromPretrained, PretrainedError } = await import('../../train/from-pretrained.js');
  try {
    const outcome = await createFromPretrained({
      source,
      modelDir,
      train,
      hyper,
      seqLenExplicit: v['seq-len'] !== undefined,
      seed,
      data,
      systemPrompt,
      maxLoss,
      weights,
      env: process.env,
      log,
      onProgress: progressReporter(process.stderr),
    });
    process.stdout.write(
      `${JSON.stringify({ model_dir: modelDir, source: outcome.source, from: outcome.record.uri, commit: outcome.record.commit ?? null, parameters: outcome.parameters, eval_loss: outcome.evalLoss, weights })}\n`,
    );
    return 0;
  } catch (err) {
    if (
      err instanceof QualityGateError ||
      err instanceof PretrainedError ||
      err instanceof ModelSourceError
    ) {
      log(`tiny-llm create-model: ${err.message}`);
      return 1;
    }
    throw err;
  }
}
