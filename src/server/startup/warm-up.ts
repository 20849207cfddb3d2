// The build's warm-up of the CLI bundle: a server start-up without a model, so the code cache saved after it holds the start-up's code compiled.
import { createLogger } from '../logging.js';
import { startServer } from '../server.js';
import { precompiledValidators } from './precompiled-validators.js';

/** Builds and readies the app as `serve` does (no model loads: it never listens), then closes it. */
export async function warmUp(): Promise<void> {
  const noModel = Promise.reject(new Error('warm-up without a model'));
  noModel.catch(() => {});
  await startServer({
    port: 0,
    host: '127.0.0.1',
    model: noModel,
    listenAfter: noModel,
    systemPrompt: 'warm-up',
    workers: 1,
    logger: createLogger({ level: 'silent' }),
    handleSignals: false,
    validators: precompiledValidators ? { use: precompiledValidators } : undefined,
  }).then(
    () => {
      throw new Error('the warm-up server started without a model');
    },
    (err: Error) => {
      if (err.message !== 'warm-up without a model') throw err;
    },
  );
}
