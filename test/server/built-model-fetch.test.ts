// `serve --model-uri gs://…` (and MODEL_URI) on the built server against a fake Cloud Storage: the process answers
// /health with /ready 503 "loading" while the download is held, then serves the verified copy and reports where
// it came from; the fetched weights leave the temporary directory once in memory, and the directory goes at exit;
// a corrupt object or an empty prefix ends the process with one line naming it and exit code 1.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ServeProcess, startServeProcess, waitReady } from '../../scripts/load/serve-process.js';
import { assertBuildCurrent } from '../helpers/built-server.js';
import { startFakeGcs } from '../helpers/fake-gcs.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

let gcs: Awaited<ReturnType<typeof startFakeGcs>>;
let model: TinyModel;
let tmp: string;

const SOURCE = {
  uri: 'hf:test-org/tiny-gpt2',
  kind: 'huggingface-hub',
  revision: 'v1.0',
  commit: '0123456789abcdef0123456789abcdef01234567',
};

before(async () => {
  assertBuildCurrent();
  gcs = await startFakeGcs();
  model = await createTinyModel({ extraFiles: { 'source.json': `${JSON.stringify(SOURCE, null, 2)}\n` } });
  for (const name of readdirSync(model.dir))
    gcs.objects.set(`test-models/served/tiny/${name}`, readFileSync(join(model.dir, name)));
  // A sibling prefix and a sub-folder that must not be fetched.
  gcs.objects.set('test-models/served/tiny-other/config.json', Buffer.from('{}'));
  tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-fetch-test-'));
});
after(async () => {
  await gcs.close();
  model.remove();
  rmSync(tmp, { recursive: true, force: true });
});

/** Starts the built `serve` with the fake Cloud Storage and its own TMPDIR (where the fetch goes). */
function serve(
  name: string,
  o: { uri?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ServeProcess & { tmpdir: string }> {
  const dir = join(tmp, name);
  mkdirSync(dir);
  return startServeProcess({
    modelUri: o.uri,
    compiled: true,
    workers: 1,
    rateLimit: 0,
    env: { STORAGE_EMULATOR_HOST: gcs.url, TMPDIR: dir, MODEL_DIR: '/nonexistent', ...o.env },
  }).then((p) => Object.assign(p, { tmpdir: dir }));
}

async function get(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Files left under a TMPDIR, with their paths relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

describe('serve --model-uri gs://…: fetched at start, verified, then served', () => {
  it('answers /health and 503 "loading" while the download is held, then serves the copy and says where it came from', async () => {
    let release!: () => void;
    gcs.faults.set('test-models/served/tiny/model.safetensors', {
      hold: new Promise<void>((r) => {
        release = r;
      }),
    });
    const server = await serve('held', { uri: 'gs://test-models/served/tiny' });
    try {
      const health = await get(`${server.url}/health`);
      assert.equal(health.status, 200);
      const ready = await get(`${server.url}/ready`);
      assert.equal(ready.status, 503);
      assert.equal(ready.body.status, 'loading');
      assert.equal((ready.body.error as { code?: string } | undefined)?.code, 'model_loading');
      const early = await fetch(`${server.url}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'hi' }),
      });
      assert.equal(early.status, 503);
      assert.equal(((await early.json()) as { error: { code: string } }).error.code, 'model_loading');

      release();
      await waitReady(server.url, 30_000);
      const info = await get(`${server.url}/api/model`);
      assert.equal(info.status, 200);
      assert.deepEqual(info.body.source, {
        kind: 'huggingface-hub',
        uri: 'hf:test-org/tiny-gpt2',
        revision: 'v1.0',
        commit: SOURCE.commit,
        preset: null,
        fine_tuned: false,
        description: 'hf:test-org/tiny-gpt2@v1.0 (commit 0123456789ab)',
      });
      const generated = await fetch(`${server.url}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'hi', max_new_tokens: 5, seed: 1 }),
      });
      assert.equal(generated.status, 200);
      assert.equal(typeof ((await generated.json()) as { response: unknown }).response, 'string');

      const out = server.output();
      assert.match(
        out,
        /fetched gs:\/\/test-models\/served\/tiny\/model\.safetensors \(\d+ bytes [^)]*CRC32C and MD5 verified\)/,
      );
      assert.doesNotMatch(out, /tiny-other/, 'a sibling prefix is not fetched');
      // The weights were deleted once in memory (the file system is memory on Cloud Run); the rest stays.
      assert.match(out, /removed the fetched model\.safetensors from /);
      const left = filesUnder(server.tmpdir);
      assert.ok(
        left.some((f) => f.endsWith('model/config.json')),
        left.join(', '),
      );
      assert.ok(
        left.some((f) => f.endsWith('model/source.json')),
        left.join(', '),
      );
      assert.ok(!left.some((f) => f.endsWith('.safetensors')), left.join(', '));
    } finally {
      const exit = await server.stop();
      assert.equal(exit.code, 0, server.output().slice(-2000));
    }
    assert.deepEqual(filesUnder(server.tmpdir), [], 'the temporary directory is removed at exit');
  });

  it('MODEL_URI does the same without the flag, and wins over the image’s MODEL_DIR', async () => {
    gcs.faults.delete('test-models/served/tiny/model.safetensors');
    const server = await serve('env', { env: { MODEL_URI: 'gs://test-models/served/tiny' } });
    try {
      await waitReady(server.url, 30_000);
      const models = await get(`${server.url}/v1/models`);
      const entry = (models.body.data as Record<string, unknown>[])[0];
      assert.equal(entry?.object, 'model');
      assert.equal((entry?.source as { uri: string } | undefined)?.uri, 'hf:test-org/tiny-gpt2');
      assert.equal(entry?.parameters, (await get(`${server.url}/api/model`)).body.parameters);
    } finally {
      assert.equal((await server.stop()).code, 0);
    }
  });

  const failures: [string, string, () => void, RegExp][] = [
    [
      'a corrupted object',
      'gs://test-models/served/tiny',
      () => gcs.faults.set('test-models/served/tiny/model.safetensors', { corrupt: true }),
      /cannot fetch the model: gs:\/\/test-models\/served\/tiny\/model\.safetensors: CRC32C \S+ does not match the listed \S+/,
    ],
    [
      'an empty prefix',
      'gs://test-models/nothing-here',
      () => {},
      /cannot fetch the model: gs:\/\/test-models\/nothing-here: no objects under this prefix/,
    ],
  ];
  for (const [what, uri, arrange, line] of failures) {
    it(`${what} ends the process with exit code 1 and one line naming it; nothing is left in TMPDIR`, async () => {
      arrange();
      const server = await serve(what.replace(/\W+/g, '-'), { uri });
      const exit = await Promise.race([
        server.exited,
        new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000)),
      ]);
      gcs.faults.delete('test-models/served/tiny/model.safetensors');
      if (exit === 'timeout') await server.stop();
      assert.notEqual(exit, 'timeout', 'the process ended by itself');
      assert.equal(exit === 'timeout' ? null : exit.code, 1, server.output().slice(-2000));
      const fatal = server
        .output()
        .split('\n')
        .filter((l) => l.includes('"severity":"CRITICAL"') || l.includes('could not be served'));
      assert.equal(fatal.length, 1, fatal.join('\n'));
      assert.match(fatal[0] ?? '', line);
      assert.deepEqual(filesUnder(server.tmpdir), []);
    });
  }
});
