// `tiny-llm export`: write a model directory in another format (GGUF, for llama.cpp / Ollama / node-llama-cpp).
import { loadModelDir } from '../../io/checkpoint.js';
import { exportGguf } from '../../io/gguf.js';
import { type Command, parseCommandArgs, requireArg, UsageError } from '../command.js';

const usage = `usage: tiny-llm export --model-dir D --format gguf --out FILE [--name NAME]

  --model-dir D   model directory (Hugging Face layout, with tokenizer files)
  --format gguf   output format (GGUF v3, all tensors F32, architecture gpt2)
  --out FILE      where to write it (written atomically)
  --name NAME     general.name stored in the file (default tiny-llm)`;

export const command: Command = {
  name: 'export',
  summary: 'export a model directory to GGUF',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      'model-dir': { type: 'string' },
      format: { type: 'string' },
      out: { type: 'string' },
      name: { type: 'string' },
    });
    const modelDir = requireArg('model-dir', values['model-dir']);
    const format = requireArg('format', values.format);
    const out = requireArg('out', values.out);
    if (format !== 'gguf') throw new UsageError(`--format must be gguf, got "${format}"`);
    const model = await loadModelDir(modelDir, { requireTokenizer: true });
    await exportGguf(out, {
      config: model.config,
      params: model.params,
      tokenizerData: model.tokenizerData!,
      name: values.name,
    });
    process.stderr.write(`wrote ${out} (GGUF, ${model.params.length} parameters)\n`);
    return 0;
  },
};
