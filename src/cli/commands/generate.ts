// `tiny-llm generate`: sample a continuation of a prompt (text or ids) from a model directory.
import { randomInt } from 'node:crypto';
import { InferenceSession } from '../../engine/inference.js';
import { generate } from '../../generate/generate.js';
import { type Command, numberArg, parseCommandArgs, requireArg, UsageError } from '../command.js';
import { isGgufFile, loadInferenceModel } from '../load-model.js';

const usage = `usage: tiny-llm generate --model-dir D (--prompt P | --prompt-ids 1,2,3) [options]

  --model-dir D            model directory (Hugging Face layout; float32, or int8 as model.q8_0.gguf), or a
                           GPT-2 .gguf file (F32, F16, Q8_0)
  --model-file F           a GPT-2 .gguf file (same as --model-dir F.gguf)
  --quantize q8_0          quantise the float32 matrices to Q8_0 at load (int8 weights, int8 products)
  --prompt P               prompt text (needs the tokenizer files in D)
  --prompt-ids 1,2,3       prompt as token ids (D may lack tokenizer files; then no text is printed)
  --max-new-tokens N       tokens to generate (default 50)
  --temperature T          0 = greedy (default 1.0)
  --top-k K                keep the K most likely tokens, 0 = off (default 50)
  --top-p P                nucleus sampling mass in (0, 1] (default 0.95)
  --repetition-penalty R   > 0, 1 = off (default 1)
  --seed S                 integer seed; same seed, same output (default: random)
  --stop S                 stop sequence (repeatable; needs the tokenizer)
  --no-eos                 keep going past <|endoftext|>
  --json                   print {"prompt_ids": [...], "ids": [...], "text": "..."}`;

function parseIds(raw: string): number[] {
  const parts = raw.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((s) => !/^\d+$/.test(s))) {
    throw new UsageError(`--prompt-ids must be comma-separated non-negative integers, got "${raw}"`);
  }
  return parts.map(Number);
}

export const command: Command = {
  name: 'generate',
  summary: 'generate text from a model directory',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      'model-dir': { type: 'string' },
      'model-file': { type: 'string' },
      quantize: { type: 'string' },
      prompt: { type: 'string' },
      'prompt-ids': { type: 'string' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      'repetition-penalty': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      'no-eos': { type: 'boolean' },
      json: { type: 'boolean' },
    });
    if (values['model-dir'] !== undefined && values['model-file'] !== undefined)
      throw new UsageError('give one of --model-dir or --model-file, not both');
    const modelDir = values['model-file'] ?? requireArg('model-dir', values['model-dir']);
    if (values['model-file'] !== undefined && !isGgufFile(modelDir))
      throw new UsageError(`--model-file must name a .gguf file, got "${modelDir}"`);
    const quantize = values.quantize;
    if (quantize !== undefined && quantize !== 'q8_0')
      throw new UsageError(`--quantize must be q8_0, got "${quantize}"`);
    if ((values.prompt === undefined) === (values['prompt-ids'] === undefined)) {
      throw new UsageError('give exactly one of --prompt or --prompt-ids');
    }
    const maxNewTokens =
      numberArg('max-new-tokens', values['max-new-tokens'], { min: 1, integer: true }) ?? 50;
    const temperature = numberArg('temperature', values.temperature, { min: 0, max: 100 }) ?? 1;
    const topK = numberArg('top-k', values['top-k'], { min: 0, integer: true }) ?? 50;
    const topP = numberArg('top-p', values['top-p'], { min: 0, max: 1 }) ?? 0.95;
    if (topP === 0) throw new UsageError('--top-p must be greater than 0');
    const repetitionPenalty = numberArg('repetition-penalty', values['repetition-penalty'], { min: 0 }) ?? 1;
    if (repetitionPenalty === 0) throw new UsageError('--repetition-penalty must be greater than 0');
    const seed = numberArg('seed', values.seed, { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true });
    const stop = values.stop ?? [];
    if (stop.some((s) => s.length === 0)) throw new UsageError('--stop must not be empty');
    const promptIdsArg = values['prompt-ids'] !== undefined ? parseIds(values['prompt-ids']) : null;
    if (values.prompt !== undefined && values.prompt.length === 0)
      throw new UsageError('--prompt must not be empty');

    const model = await loadInferenceModel(modelDir, { requireTokenizer: promptIdsArg === null, quantize });
    const { tokenizer, config } = model;
    if (stop.length > 0 && !tokenizer) throw new UsageError(`--stop needs tokenizer files in ${modelDir}`);
    const promptIds = promptIdsArg ?? tokenizer!.encode(values.prompt!);
    for (const id of promptIds) {
      if (id >= config.vocabSize)
        throw new UsageError(`prompt id ${id} is outside the vocabulary [0, ${config.vocabSize})`);
    }
    if (promptIds.length === 0) throw new UsageError('the prompt encodes to zero tokens');
    if (promptIds.length > config.nPositions) {
      throw new UsageError(
        `the prompt has ${promptIds.length} tokens but the context holds ${config.nPositions}`,
      );
    }
    const session = new InferenceSession(model.weights);
    const it = generate(session, tokenizer, promptIds, {
      temperature,
      topK,
      topP,
      repetitionPenalty,
      maxNewTokens,
      seed: seed ?? randomInt(2 ** 47),
      stop,
      eosTokenId: values['no-eos'] ? null : config.eosTokenId,
    });
    // Stream text to a terminal as it comes; with --json print one object at the end.
    let next = it.next();
    while (!next.done) {
      if (!values.json && tokenizer) process.stdout.write(next.value.text);
      next = it.next();
    }
    const result = next.value;
    // Like Hugging Face's generate, the ids include the end-of-text token when the model produced it.
    const ids = result.endedByEos ? [...result.ids, config.eosTokenId] : result.ids;
    if (values.json) {
      const out: Record<string, unknown> = { prompt_ids: promptIds, ids };
      if (tokenizer) out.text = result.text;
      process.stdout.write(`${JSON.stringify(out)}\n`);
    } else if (tokenizer) {
      process.stdout.write('\n');
    } else {
      process.stdout.write(`${ids.join(',')}\n`);
    }
    return 0;
  },
};
