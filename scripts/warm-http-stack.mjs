// Runs the bundled HTTP stack's start-up once (the app built and its schemas compiled; no model, no port) and saves V8's code cache of it, so `serve` starts without compiling that code.
import { codeCache, createLogger, saveCodeCache, startServer } from '../dist/server/http-stack.js';

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
}).then(
  () => {
    throw new Error('the warm-up server started without a model');
  },
  () => {},
);
console.log(codeCache === 'used' ? 'current' : await saveCodeCache());
