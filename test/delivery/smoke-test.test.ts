// The pipeline's smoke test (.github/scripts/smoke-test.sh) against the built server: it passes when the service
// serves the model the build was asked for with the API key it was given, and fails, naming the difference, when
// the source, the fine-tuning flag or the parameter count differ, or when the key is missing.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ServeProcess, startServeProcess, waitReady } from '../../scripts/load/serve-process.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { assertBuildCurrent } from '../helpers/built-server.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';
import { repoRoot } from './hcl-model.js';

const script = join(repoRoot, '.github/scripts/smoke-test.sh');
const hasTools = ['jq', 'curl'].every(
  (tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).status === 0,
);
const KEY = 'smoke-test-key-0123456789';

let model: TinyModel;
let server: ServeProcess;
/** The server the first suite started (smoke() calls `server`, which the second suite points elsewhere). */
let first: ServeProcess;

before(async () => {
  if (!hasTools) return;
  assertBuildCurrent();
  model = await createTinyModel({
    extraFiles: {
      'source.json': `${JSON.stringify({ uri: 'hf:test-org/tiny-gpt2', kind: 'huggingface-hub', revision: 'v1.0', commit: 'a'.repeat(40) })}\n`,
    },
  });
  server = await startServeProcess({
    modelDir: model.dir,
    compiled: true,
    workers: 1,
    rateLimit: 0,
    env: { API_KEY: KEY },
  });
  await waitReady(server.url, 60_000);
  first = server;
});
after(async () => {
  if (!hasTools) return;
  await first.stop();
  model.remove();
});

/** Runs the smoke test with these variables (asynchronously: the server runs in this process's children). */
function smoke(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [script, server.url], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, READY_TIMEOUT_SECONDS: '30', ...env },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('smoke-test.sh on the built server', { skip: !hasTools && 'needs jq and curl' }, () => {
  const parameters = () => String(parameterLayout(model.config).total);

  test('passes with the key, the source asked for (revision included) and the parameter count', async () => {
    const r = await smoke({
      API_KEY: KEY,
      EXPECT_MODEL_SOURCE: 'hf:test-org/tiny-gpt2@v1.0',
      EXPECT_FINETUNED: 'false',
      EXPECT_PARAMETERS: parameters(),
    });
    console.log(r.out.trim());
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /GET \/v1\/models → hf:test-org\/tiny-gpt2@v1\.0 \(commit a{12}\), \d+ parameters/);
    assert.match(r.out, /without the key → 401/);
    assert.match(r.out, /all checks passed/);
  });

  const failures: [string, Record<string, string>, RegExp][] = [
    ['another model', { EXPECT_MODEL_SOURCE: 'hf:distilgpt2' }, /does not report hf:distilgpt2/],
    ['another revision', { EXPECT_MODEL_SOURCE: 'hf:test-org/tiny-gpt2@main' }, /does not report/],
    [
      'the default preset',
      { EXPECT_MODEL_SOURCE: '' },
      /does not report the default preset trained in the build/,
    ],
    [
      'a fine-tuned model',
      { EXPECT_MODEL_SOURCE: 'hf:test-org/tiny-gpt2', EXPECT_FINETUNED: 'true' },
      /fine_tuned/,
    ],
    [
      'another size',
      { EXPECT_MODEL_SOURCE: 'hf:test-org/tiny-gpt2', EXPECT_PARAMETERS: '124439808' },
      /the build measured 124439808/,
    ],
  ];
  for (const [what, env, message] of failures) {
    test(`fails when the service serves something else than ${what}`, async () => {
      const r = await smoke({ API_KEY: KEY, ...env });
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, message);
    });
  }

  test('fails without the key, on the first call the key guards', async () => {
    const r = await smoke({ EXPECT_MODEL_SOURCE: 'hf:test-org/tiny-gpt2' });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /GET \/v1\/models answered 401/);
  });
});

describe('smoke-test.sh: the other kinds of source', { skip: !hasTools && 'needs jq and curl' }, () => {
  const cases: [string, Record<string, string>, Record<string, string>][] = [
    [
      'the default preset trained in the build (no source asked for)',
      { 'training.json': JSON.stringify({ preset: 'default', trained: true }) },
      { EXPECT_MODEL_SOURCE: '' },
    ],
    [
      'a directory of the build context (./models/NAME), fine-tuned',
      {
        'source.json': JSON.stringify({ uri: '/app/models/gpt2-local', kind: 'directory' }),
        'training.json': JSON.stringify({ preset: 'fine-tune', trained: true }),
      },
      { EXPECT_MODEL_SOURCE: './models/gpt2-local', EXPECT_FINETUNED: 'true' },
    ],
  ];
  for (const [what, files, env] of cases) {
    test(`passes for ${what}`, async () => {
      const m = await createTinyModel({ extraFiles: files });
      const s = await startServeProcess({ modelDir: m.dir, compiled: true, workers: 1, rateLimit: 0 });
      try {
        await waitReady(s.url, 60_000);
        server = s;
        const r = await smoke(env);
        assert.equal(r.code, 0, r.out);
        const wrong = await smoke({ ...env, EXPECT_MODEL_SOURCE: './models/other' });
        assert.equal(wrong.code, 1, wrong.out);
      } finally {
        await s.stop();
        m.remove();
      }
    });
  }
});
