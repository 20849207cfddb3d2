// Proves the bundled HTTP stack (scripts/build-server.mjs → dist/server/http-stack.cjs) serves like the modules:
// it keeps our own modules (the worker pool) separate, starts from its code cache, and the compiled `tiny-llm serve`
// on it answers, drains and fails as before.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repoRoot } from '../helpers/fixtures.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

const built = existsSync(join(repoRoot, 'dist', 'server', 'server.js'));
const bundlePath = join(repoRoot, 'dist', 'server', 'http-stack.cjs');
const entryPath = join(repoRoot, 'dist', 'server', 'http-stack.js');
let tiny: TinyModel;
let buildOutput = '';

/** Runs the compiled CLI; resolves with its exit code and output, and the port it listened on (if any). */
function runCompiled(
  args: string[],
  whileListening?: (port: number) => Promise<void>,
): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'tiny-llm.js'), ...args], {
    cwd: repoRoot,
    env: { ...process.env, LOG_LEVEL: 'info', PORT: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let started = false;
  let failure: unknown = null;
  const onData = (d: Buffer) => {
    out += d.toString();
    const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
    if (m && !started && whileListening) {
      started = true;
      whileListening(Number(m[1])).then(
        () => child.kill('SIGTERM'),
        (err) => {
          failure = err;
          child.kill('SIGKILL');
        },
      );
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (failure) reject(failure);
      else resolve({ code, out });
    });
  });
}

/** GET /ready until it answers 200 (or 10 s pass); resolves with its last status. */
async function readyStatus(port: number): Promise<number> {
  let status = 0;
  for (let i = 0; i < 500 && status !== 200; i++) {
    status = (await fetch(`http://127.0.0.1:${port}/ready`)).status;
    if (status !== 200) await new Promise((r) => setTimeout(r, 20));
  }
  return status;
}

describe('the bundled HTTP stack', { skip: built ? false : 'needs `npm run build` (dist/)' }, () => {
  before(async () => {
    tiny = await createTinyModel({ seed: 5 });
    const build = spawn(process.execPath, [join(repoRoot, 'scripts', 'build-server.mjs')], { cwd: repoRoot });
    build.stdout.on('data', (d: Buffer) => (buildOutput += d.toString()));
    const code = await new Promise((resolve) => build.on('exit', resolve));
    assert.equal(code, 0, 'scripts/build-server.mjs failed');
  });
  after(() => tiny?.remove());

  it('bundles the packages but takes our own modules (pool, chat template) from their files, and leaves the engine and model loader out', async () => {
    const text = readFileSync(bundlePath, 'utf8');
    assert.match(
      text,
      /require\("\.\/workers\/pool\.js"\)/,
      'the worker pool is not required from its module',
    );
    // The HTTP thread never runs the engine or reads model files (a generation worker loads the model): neither
    // is bundled nor imported there, so their modules cost the start-up nothing.
    assert.doesNotMatch(
      text,
      /require\("\.\.\/(engine|io\/checkpoint|generate\/generate|generate\/sampler)[^"]*"\)|InferenceWeights|packFullHead/,
      'the engine or the model loader is in the HTTP stack',
    );
    assert.doesNotMatch(
      text,
      /require\("(fastify|pino|prom-client|helmet)"\)/,
      'a package was left unbundled',
    );
    const entry = readFileSync(entryPath, 'utf8');
    assert.match(
      entry,
      /import \* as m\d+ from "\.\/workers\/pool\.js"/,
      'the entry does not hand over the pool',
    );
    assert.doesNotMatch(
      entry,
      /from "\.\.\/(engine|io\/checkpoint)/,
      'the entry imports the engine or the loader',
    );
    const stack = await import(entryPath);
    assert.equal(typeof stack.createLogger, 'function');
    assert.equal(typeof stack.startServer, 'function');
    // The build ran the start-up once and saved the code cache: this start used it.
    assert.equal(stack.codeCache, 'used');
    // Before saving it, the build's start-up answered requests through the app (so the cache holds the request
    // path compiled): the probes, the APIs without a model (503) and a malformed body (400).
    const warmed = /warmed by ([^)]*)\)/.exec(buildOutput)?.[1] ?? '';
    console.log(`build's warm-up requests: ${warmed}`);
    for (const answer of [
      'GET /health 200',
      'GET /ready 503',
      'GET /metrics 200',
      'POST /generate 503',
      'POST /generate 400',
      'POST /v1/chat/completions 503',
    ])
      assert.ok(
        warmed.includes(answer),
        `the build's warm-up did not answer ${answer}: ${warmed || buildOutput}`,
      );
    const serve = await import(join(repoRoot, 'dist', 'cli', 'commands', 'serve.js'));
    assert.equal(serve.httpStackBundleIsCurrent(), true, 'serve would not load the fresh bundle');
  });

  it('bundles the generation worker with the engine into one CommonJS file, which the compiled pool runs', async () => {
    const worker = readFileSync(join(repoRoot, 'dist', 'server', 'workers', 'generation-worker.cjs'), 'utf8');
    assert.doesNotMatch(
      worker,
      /require\("\.\.?\//,
      'the worker bundle requires one of our modules from its file',
    );
    assert.doesNotMatch(worker, /\bimport\.meta\b/, 'import.meta left in a CommonJS file');
    const pool = await import(join(repoRoot, 'dist', 'server', 'workers', 'pool.js'));
    // Started through its entry, which runs the bundle through V8's code cache (and is small: no engine).
    assert.match(pool.generationWorkerFile, /\/generation-worker-entry\.cjs$/);
    assert.equal(pool.workersUseCodeCache, true);
    const entry = readFileSync(
      join(repoRoot, 'dist', 'server', 'workers', 'generation-worker-entry.cjs'),
      'utf8',
    );
    assert.match(entry, /generation-worker\.cjs/);
    assert.doesNotMatch(entry, /InferenceWeights|packFullHead/, 'the entry bundles the engine');
  });

  it("the first worker writes the worker bundle's code cache after its first job; the next start uses it, and a damaged one is replaced", async () => {
    const cacheFile = join(repoRoot, 'dist', 'server', 'workers', 'generation-worker.cjs.cache');
    const serveOnce = async (): Promise<string> => {
      const { code, out } = await runCompiled(
        ['serve', '--model-dir', tiny.dir, '--port', '0', '--host', '127.0.0.1', '--workers', '1'],
        async (port) => {
          assert.equal(await readyStatus(port), 200);
          const reply = await fetch(`http://127.0.0.1:${port}/generate`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ prompt: 'Hello', max_new_tokens: 4, seed: 1 }),
          });
          assert.equal(reply.status, 200);
          // The worker answers the pool's save request right after that job.
          await new Promise((r) => setTimeout(r, 500));
        },
      );
      assert.equal(code, 0, out);
      return /generation worker code cache: ([^"\n]*)/.exec(out)?.[1] ?? `no log line in:\n${out}`;
    };
    rmSync(cacheFile, { force: true });
    const first = await serveOnce();
    const second = await serveOnce();
    writeFileSync(cacheFile, Buffer.concat([readFileSync(cacheFile).subarray(0, 200), Buffer.alloc(64, 7)]));
    const damaged = await serveOnce();
    const after = await serveOnce();
    console.log(
      `worker code cache: absent → ${first}; then → ${second}; damaged → ${damaged}; then → ${after}`,
    );
    assert.match(first, /^absent; written to .*generation-worker\.cjs\.cache$/);
    assert.equal(second, 'used; current');
    assert.match(damaged, /^damaged: .*; written to /);
    assert.equal(after, 'used; current');
  });

  it('compiled `tiny-llm serve` on the bundle: /ready, /generate, then SIGTERM exits 0', async () => {
    const { code, out } = await runCompiled(
      ['serve', '--model-dir', tiny.dir, '--port', '0', '--host', '127.0.0.1', '--workers', '2'],
      async (port) => {
        assert.equal(await readyStatus(port), 200);
        // Ready once the worker that loaded the model can generate; the second joins soon after.
        let workers = { ready: 0, total: 0 };
        for (let i = 0; i < 500 && (workers.total === 0 || workers.ready < workers.total); i++) {
          workers = (await (await fetch(`http://127.0.0.1:${port}/ready`)).json()).workers;
          if (workers.ready < workers.total) await new Promise((r) => setTimeout(r, 10));
        }
        assert.deepEqual(workers, { ready: 2, total: 2 });
        const reply = await fetch(`http://127.0.0.1:${port}/generate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: 'Hello', max_new_tokens: 4, seed: 1 }),
        });
        assert.equal(reply.status, 200);
        assert.equal(typeof (await reply.json()).response, 'string');
        const bad = await fetch(`http://127.0.0.1:${port}/generate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: 5 }),
        });
        assert.equal(bad.status, 400);
        assert.equal((await bad.json()).error.param, 'prompt');
      },
    );
    assert.equal(code, 0, out);
    assert.match(out, /model ready: .* of 2 workers ready, tokenizer from tokenizer-tables\.bin/);
    assert.match(out, /all 2 workers ready \(\d+ ms after the first\)|2 of 2 workers ready/);
    assert.match(out, /HTTP stack: code cache used/);
    assert.match(out, /shutting down \(received SIGTERM\)/);
  });

  it('compiled `tiny-llm serve` on a missing model directory exits 1 without listening', async () => {
    const { code, out } = await runCompiled([
      'serve',
      '--model-dir',
      join(tiny.dir, 'nope'),
      '--port',
      '0',
      '--host',
      '127.0.0.1',
    ]);
    assert.equal(code, 1, out);
    assert.match(out, /cannot serve the model: .*nope/);
    assert.doesNotMatch(out, /listening at/);
  });
});
