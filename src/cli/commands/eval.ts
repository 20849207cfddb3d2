// `tiny-llm eval`: per-token loss of a model on a text file (each non-empty line on its own).
import { GPT2 } from '../../engine/model.js';
import { loadModelDir } from '../../io/checkpoint.js';
import { readTextFile } from '../../io/dataset.js';
import { Gpt2Tokenizer } from '../../tokenizer/gpt2-bpe.js';
import { evaluateLines } from '../../train/evaluate.js';
import { type Command, parseCommandArgs, requireArg } from '../command.js';

const usage = `usage: tiny-llm eval --model-dir D --data-file F [--json]

  --model-dir D   model directory (with tokenizer files)
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
    const loaded = await loadModelDir(modelDir, { requireTokenizer: true });
    const tokenizer = new Gpt2Tokenizer(loaded.tokenizerData!);
    const model = new GPT2(loaded.config, loaded.params);
    const r = evaluateLines(model, tokenizer, text);
    if (values.json)
      process.stdout.write(`${JSON.stringify({ lines: r.lines, tokens: r.tokens, loss: r.loss })}\n`);
    else
      process.stdout.write(
        `${r.loss.toFixed(4)} nats/token over ${r.tokens} predicted tokens in ${r.lines} lines of ${dataFile}\n`,
      );
    return 0;
  },
};
