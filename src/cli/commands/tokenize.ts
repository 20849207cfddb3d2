// `tiny-llm tokenize`: turn text into token ids with a model directory's tokenizer.
import { text as readAll } from 'node:stream/consumers';
import { loadTokenizerData } from '../../io/tokenizer-files.js';
import { Gpt2Tokenizer } from '../../tokenizer/gpt2-bpe.js';
import { type Command, parseCommandArgs, requireArg, UsageError } from '../command.js';

const usage = `usage: tiny-llm tokenize --model-dir D [--text T]

  --model-dir D   model directory with tokenizer files (tokenizer.json or vocab.json + merges.txt)
  --text T        text to encode; prints a JSON array of ids.
                  Without --text, reads a JSON array of strings on stdin and prints an array of id arrays.`;

export const command: Command = {
  name: 'tokenize',
  summary: 'encode text into token ids',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, { 'model-dir': { type: 'string' }, text: { type: 'string' } });
    const modelDir = requireArg('model-dir', values['model-dir']);
    const data = await loadTokenizerData(modelDir);
    if (!data)
      throw new Error(`${modelDir}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt)`);
    const tokenizer = new Gpt2Tokenizer(data);
    if (values.text !== undefined) {
      process.stdout.write(`${JSON.stringify(tokenizer.encode(values.text))}\n`);
      return 0;
    }
    const input = await readAll(process.stdin);
    let texts: unknown;
    try {
      texts = JSON.parse(input);
    } catch (err) {
      throw new UsageError(`stdin must be a JSON array of strings: ${(err as Error).message}`);
    }
    if (!Array.isArray(texts)) throw new UsageError('stdin must be a JSON array of strings');
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw new UsageError(`stdin item ${i} is ${typeof t}, expected a string`);
    });
    process.stdout.write(`${JSON.stringify((texts as string[]).map((t) => tokenizer.encode(t)))}\n`);
    return 0;
  },
};
