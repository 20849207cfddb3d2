// Writes the request validators ajv generates for the app's route schemas into one CommonJS module (run by scripts/build-cli.mjs, which bundles it into the CLI).
import { writeFileAtomic } from '../src/io/atomic.js';
import { buildApp } from '../src/server/app.js';
import { validatorsModule } from '../src/server/startup/validators.js';

const out = process.argv[2];
if (!out) throw new Error('usage: record-validators.ts OUT.cjs');
const recorded = new Map<string, string>();
// The app as `serve` builds it; its model never loads (validators are compiled when the app is made ready).
const noModel = Promise.reject(new Error('no model while recording validators'));
noModel.catch(() => {});
const app = await buildApp({
  model: noModel,
  systemPrompt: 'recording',
  workers: 1,
  logger: false,
  validators: { record: (key, code) => recorded.set(key, code) },
});
await app.ready();
await app.close();
await writeFileAtomic(out, validatorsModule(recorded));
console.log(`${recorded.size} validators`);
