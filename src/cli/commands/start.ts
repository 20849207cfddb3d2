// `tiny-llm start` (what `npm start` runs): builds and trains the default model if it is missing, then serves it.
import { access } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from '../command.js';
import { parseCommandArgs } from '../command.js';

const usage = `usage: tiny-llm start [--model-dir D] [--port N] [--host H] [--workers N]

Serves the model in D ($MODEL_DIR or ./model); when D holds no model yet, first runs
\`tiny-llm create-model --train --preset default --model-dir D\`. Other options as for \`tiny-llm serve\`.`;

async function hasModel(dir: string): Promise<boolean> {
  try {
    await access(path.join(dir, 'config.json'));
    await access(path.join(dir, 'model.safetensors'));
    return true;
  } catch {
    return false;
  }
}

export const command: Command = {
  name: 'start',
  summary: 'create the default model if it is missing, then serve it',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      'model-dir': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      workers: { type: 'string' },
      'api-key': { type: 'string', multiple: true },
      'cors-origin': { type: 'string', multiple: true },
    });
    const modelDir = path.resolve(values['model-dir'] ?? process.env.MODEL_DIR ?? 'model');
    if (!(await hasModel(modelDir))) {
      process.stderr.write(
        `tiny-llm start: no model in ${modelDir}; creating and training the default one\n`,
      );
      const { command: createModel } = await import('./create-model.js');
      const code = await createModel.run(['--train', '--preset', 'default', '--model-dir', modelDir]);
      if (code !== 0) return code;
    }
    const serveArgs = ['--model-dir', modelDir];
    for (const flag of ['port', 'host', 'workers'] as const) {
      const value = values[flag];
      if (value !== undefined) serveArgs.push(`--${flag}`, value);
    }
    for (const flag of ['api-key', 'cors-origin'] as const)
      for (const value of values[flag] ?? []) serveArgs.push(`--${flag}`, value);
    const { command: serve } = await import('./serve.js');
    return serve.run(serveArgs);
  },
};
