// `tiny-llm start` (what `npm start` runs): builds and trains the default model if it is missing, then serves it.
import { access } from 'node:fs/promises';
import path from 'node:path';
import { CONFIG_FILE, Q8_WEIGHTS_FILE, WEIGHTS_FILE } from '../../io/checkpoint.js';
import { runService } from '../../server/startup/serve.js';
import type { Command } from '../command.js';
import { parseServeArgs, serveFlagsUsage } from '../serve-options.js';

const usage = `usage: tiny-llm start [options]

Serves the model in --model-dir ($MODEL_DIR or ./model); when it holds no model yet, first runs
\`tiny-llm create-model --train --preset default --model-dir D\`. The options are those of \`tiny-llm serve\`:

${serveFlagsUsage}`;

async function hasModel(dir: string): Promise<boolean> {
  // A .gguf file is served as it is (a missing one is reported by the load, never created here).
  if (dir.toLowerCase().endsWith('.gguf')) return true;
  try {
    await access(path.join(dir, CONFIG_FILE));
  } catch {
    return false;
  }
  // Float32 safetensors or int8 model.q8_0.gguf (create-model --quantize q8_0); a broken one is the load's to report.
  for (const weights of [WEIGHTS_FILE, Q8_WEIGHTS_FILE]) {
    try {
      await access(path.join(dir, weights));
      return true;
    } catch {}
  }
  return false;
}

export const command: Command = {
  name: 'start',
  summary: 'create the default model if it is missing, then serve it',
  usage,
  async run(argv) {
    // Every flag is checked before a model is trained for minutes.
    const options = parseServeArgs(argv);
    // A model fetched with --model-uri is served as it is.
    if (options.modelDir !== null && !(await hasModel(options.modelDir))) {
      process.stderr.write(
        `tiny-llm start: no model in ${options.modelDir}; creating and training the default one\n`,
      );
      const { command: createModel } = await import('./create-model.js');
      const code = await createModel.run(['--train', '--preset', 'default', '--model-dir', options.modelDir]);
      if (code !== 0) return code;
    }
    return runService(options);
  },
};
