// `tiny-llm eval`: per-token loss of a model on a text file (each non-empty line on its own).
import { InferenceSession, meanTokenLoss } from '../../engine/inference.js';
import { GPT2 } from '../../engine/model.js';
import { loadModelDir, modelDirWeights } from '../../io/checkpoint.js';
import { readTextFile } from '../../io/dataset.js';
import { Gpt2Tokenizer } from '../../tokenizer/gpt2-bpe.js';
import { splitLines } from '../../train/corpus.js';
import { type EvalResult, evaluateLines } from '../../train/evaluate.js';
import { type Command, parseCommandArgs, requireArg } from '../command.js';
import { loadInferenceModel } from '../load-model.js';

const usage = `usage: tiny-llm eval --model-dir D --data-file F [--json]

  --model-dir D   model directory (with tokenizer files; weights float32, or int8 in model.q8_0.gguf)
  --data-file F   text file; each non-empty line is tokenized on its own (truncated to the context)
  --json          print {"lines": n, "tokens": n, "loss": x}: mean next-token cross-entropy (nats) over
                  all predicted tokens; without it, a sentence saying the same`;

export const command: Command = {
  name: 'eval',
  summary: 'per-token loss of a model on a text file',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      'model-dir': { type: 'string' },
      'data-file': { type: 'string' },
      json: { type: 'boolean' },
    });
    const modelDir = requireArg('model-dir', values['model-dir']);
    const dataFile = requireArg('data-file', values['data-file']);
    const text = await readTextFile(dataFile, 'data file');
    const r =
      (await modelDirWeights(modelDir)) === 'q8_0'
        ? await q8Loss(modelDir, text)
        : await f32Loss(modelDir, text);
    if (values.json)
      process.stdout.write(`${JSON.stringify({ lines: r.lines, tokens: r.tokens, loss: r.loss })}\n`);
    else
      process.stdout.write(
        `${r.loss.toFixed(4)} nats/token over ${r.tokens} predicted tokens in ${r.lines} lines of ${dataFile}\n`,
      );
    return 0;
  },
};

/** The training forward over float32 weights (the loss --max-loss gates on). */
async function f32Loss(modelDir: string, text: string): Promise<EvalResult> {
  const loaded = await loadModelDir(modelDir, { requireTokenizer: true });
  const tokenizer = new Gpt2Tokenizer(loaded.tokenizerData!);
  return evaluateLines(new GPT2(loaded.config, loaded.params), tokenizer, text);
}

/** Int8 weights through the inference session: the same lines, truncation and full-vocabulary loss. */
async function q8Loss(modelDir: string, text: string): Promise<EvalResult> {
  const model = await loadInferenceModel(modelDir, { requireTokenizer: true });
  const lines = splitLines(text);
  const sequences = lines
    .map((line) => model.tokenizer!.encode(line).slice(0, model.config.nPositions))
    .filter((ids) => ids.length >= 2);
  const r = meanTokenLoss(new InferenceSession(model.weights), sequences);
  return { lines: lines.length, tokens: r.tokens, loss: r.tokens === 0 ? 0 : r.loss };
}
