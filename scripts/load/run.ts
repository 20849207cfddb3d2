// `npm run load`: the load run from the command line; prints the figures and exits 1 on any unexpected error.
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createTinyModel } from '../../test/helpers/tiny-model.js';
import { formatReport, runLoad } from './load.js';

const usage = `usage: npm run load -- [options]

  --clients N        concurrent clients (default 64)
  --duration S       seconds of load (default 60)
  --model-dir D      model to serve (default $MODEL_DIR, else ./model, else a random-init model of the
                     original's shape: n_embd 16, 1 layer, 1 head, 256 positions, GPT-2 vocabulary)
  --workers N        server generation workers (default: one per core)
  --queue-limit N    server queue limit (default: the server's, 64)
  --rate-limit N     per-client requests per minute on the server (default: the server's, 120; 0 = off)
  --max-tokens N     tokens per request (default 32)
  --compiled         serve with bin/tiny-llm.js (after npm run build) instead of the TypeScript source
  --json FILE        also write the figures as JSON`;

function int(name: string, value: string | undefined, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`--${name} must be a whole number, got ${JSON.stringify(value)}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      clients: { type: 'string' },
      duration: { type: 'string' },
      'model-dir': { type: 'string' },
      workers: { type: 'string' },
      'queue-limit': { type: 'string' },
      'rate-limit': { type: 'string' },
      'max-tokens': { type: 'string' },
      compiled: { type: 'boolean' },
      json: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const clients = int('clients', values.clients, 64)!;
  const durationS = int('duration', values.duration, 60)!;
  if (clients < 1 || durationS < 1) throw new Error('--clients and --duration must be at least 1');
  let modelDir = values['model-dir'] ?? process.env.MODEL_DIR;
  if (!modelDir && existsSync(path.join('model', 'config.json'))) modelDir = 'model';
  let cleanup = () => {};
  if (!modelDir) {
    const tiny = await createTinyModel({ nPositions: 256 });
    modelDir = tiny.dir;
    cleanup = tiny.remove;
    console.log(`no model given: serving a random-init model of the original's shape from ${modelDir}`);
  }
  try {
    const report = await runLoad({
      modelDir: path.resolve(modelDir),
      clients,
      durationS,
      workers: int('workers', values.workers),
      queueLimit: int('queue-limit', values['queue-limit']),
      rateLimit: int('rate-limit', values['rate-limit']),
      maxTokens: int('max-tokens', values['max-tokens']),
      compiled: values.compiled,
      log: (line) => console.log(line),
    });
    console.log(formatReport(report));
    if (values.json) {
      // Temp file + rename: a reader never sees half a report.
      const tmp = `${values.json}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(report, null, 2)}\n`);
      renameSync(tmp, values.json);
    }
    return report.unexpected === 0 && report.healthFailures === 0 ? 0 : 1;
  } finally {
    cleanup();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    console.error(`load: ${err.message}`);
    process.exitCode = 2;
  },
);
