// Start-up and shutdown: /ready before the model is loaded and while draining (in process), and of the built
// `tiny-llm serve` process as the image runs it: SIGTERM drain (streams finish, new requests 503, exit 0), `tiny-llm
// start` on an existing model, and a broken model directory exits 1.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { truncateSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildApp } from '../../src/server/app.js';
import { loadServedModel, type ServedModel } from '../../src/server/model.js';
import { assertBuildCurrent } from '../helpers/built-server.js';
import { repoRoot } from '../helpers/fixtures.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

let tiny: TinyModel;

before(async () => {
  tiny = await createTinyModel({ nPositions: 1024 });
});
after(() => tiny.remove());

const generate = { method: 'POST' as const, url: '/generate', payload: { prompt: 'hi', max_new_tokens: 3 } };

describe('readiness', () => {
  it('is 503 loading until the model and workers are up; generation meanwhile is 503 with Retry-After', async () => {
    let resolveModel!: (m: ServedModel) => void;
    const pending = new Promise<ServedModel>((r) => {
      resolveModel = r;
    });
    const app = await buildApp({
      model: pending,
      systemPrompt: 's',
      workers: 1,
      logger: false,
      rateLimit: false,
      processMetrics: false,
    });
    try {
      assert.equal((await app.inject('/health')).statusCode, 200, 'alive while loading');
      const ready = await app.inject('/ready');
      assert.equal(ready.statusCode, 503);
      assert.equal(ready.json().status, 'loading');
      assert.equal(ready.json().error.code, 'model_loading');
      const gen = await app.inject(generate);
      assert.equal(gen.statusCode, 503);
      assert.equal(gen.json().error.code, 'model_loading');
      assert.ok(gen.headers['retry-after']);
      assert.equal((await app.inject('/api/model')).statusCode, 503);
      resolveModel(await loadServedModel(tiny.dir));
      await app.generation.ready;
      assert.deepEqual((await app.inject('/ready')).json(), {
        status: 'ready',
        workers: { ready: 1, total: 1 },
      });
      assert.equal((await app.inject(generate)).statusCode, 200);
    } finally {
      await app.close();
    }
  });

  it('while draining: /ready 503 draining, new generations 503, running ones finish; past the deadline they are cancelled', async () => {
    const app = await buildApp({
      modelDir: tiny.dir,
      systemPrompt: 's',
      workers: 1,
      logger: false,
      rateLimit: false,
      processMetrics: false,
    });
    try {
      await app.generation.ready;
      const long = app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: { messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 900 },
      });
      while (app.generation.pool!.busyWorkers === 0) await new Promise((r) => setTimeout(r, 5));
      const drained = app.generation.drain(30);
      const draining = (await app.inject('/ready')).json();
      assert.equal(draining.status, 'draining');
      assert.equal(draining.error.code, 'shutting_down');
      const refused = await app.inject(generate);
      assert.equal(refused.statusCode, 503);
      assert.equal(refused.json().error.code, 'shutting_down');
      assert.equal((await app.inject('/health')).statusCode, 200);
      const { cancelled } = await drained;
      assert.equal(cancelled, 1, 'a 900-token stream outlives a 30 ms drain');
      const res = await long;
      const last = res.body.trim().split('\n\n').at(-1)!;
      assert.equal(
        JSON.parse(last.slice(6)).error.code,
        'shutting_down',
        'the cut stream ends with an error event',
      );
    } finally {
      await app.close();
    }
  });
});

interface Served {
  child: ChildProcess;
  port: number;
  output: () => string;
  exit: Promise<{ code: number | null; ms: number }>;
}

/** The built CLI, as the image runs it. */
const bin = join(repoRoot, 'bin', 'tiny-llm.js');

/** Spawns the built `tiny-llm serve` (or another sub-command) and resolves once it listens. */
function serve(args: string[], command = 'serve'): Promise<Served> {
  assertBuildCurrent();
  const child = spawn(process.execPath, [bin, command, ...args], {
    cwd: repoRoot,
    env: { ...process.env, LOG_LEVEL: 'info', PORT: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let signalledAt = 0;
  const exit = new Promise<{ code: number | null; ms: number }>((resolve) => {
    child.on('exit', (code) => resolve({ code, ms: signalledAt ? performance.now() - signalledAt : 0 }));
  });
  const originalKill = child.kill.bind(child);
  child.kill = (signal?: NodeJS.Signals | number) => {
    signalledAt = performance.now();
    return originalKill(signal);
  };
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        child.stdout!.off('data', onData);
        child.stdout!.on('data', (more: Buffer) => {
          out += more.toString();
        });
        resolve({ child, port: Number(m[1]), output: () => out, exit });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    exit.then(({ code }) => reject(new Error(`serve exited (${code}) before listening:\n${out}`)));
  });
}

/** A streamed chat completion over a socket; resolves with the whole body once it ends. */
function openStream(port: number, onFirstData: () => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({
      messages: [{ role: 'user', content: 'drain me' }],
      stream: true,
      max_tokens: 900,
      seed: 4,
    });
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    req.on('response', (res) => {
      let text = '';
      let first = true;
      res.on('data', (d: Buffer) => {
        text += d.toString();
        if (first) {
          first = false;
          onFirstData();
        }
      });
      res.on('end', () => resolve(text));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function waitReady(port: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => null);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server never became ready');
}

describe('tiny-llm serve process', () => {
  it('SIGTERM: in-flight streams finish, new requests get 503, the process exits 0 within the drain time', async () => {
    const s = await serve(['--model-dir', tiny.dir, '--port', '0', '--host', '127.0.0.1', '--workers', '2']);
    try {
      await waitReady(s.port);
      let started = 0;
      let allStarted!: () => void;
      const bothStarted = new Promise<void>((r) => {
        allStarted = r;
      });
      const streams = [0, 1].map(() =>
        openStream(s.port, () => {
          if (++started === 2) allStarted();
        }),
      );
      await bothStarted;
      s.child.kill('SIGTERM');
      // Once the server has taken the signal (on a busy machine that can take a while).
      for (let i = 0; i < 250; i++) {
        const probe = await fetch(`http://127.0.0.1:${s.port}/ready`);
        await probe.body?.cancel();
        if (probe.status === 503) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const [ready, refused] = await Promise.all([
        fetch(`http://127.0.0.1:${s.port}/ready`),
        fetch(`http://127.0.0.1:${s.port}/generate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: 'late' }),
        }),
      ]);
      assert.equal(ready.status, 503);
      const readyBody = await ready.json();
      assert.equal(readyBody.status, 'draining');
      assert.equal(readyBody.error.code, 'shutting_down');
      assert.equal(refused.status, 503);
      assert.equal((await refused.json()).error.code, 'shutting_down');
      const bodies = await Promise.all(streams);
      for (const body of bodies)
        assert.ok(body.endsWith('data: [DONE]\n\n'), `a stream was cut: ${body.slice(-120)}`);
      const { code, ms } = await s.exit;
      const closedLine = /closed after (\d+) ms/.exec(s.output());
      console.log(
        `exit code ${code} ${ms.toFixed(0)} ms after SIGTERM with 2 streams in flight (server closed after ${closedLine?.[1]} ms)`,
      );
      assert.equal(code, 0, s.output());
      assert.ok(ms < 10_000, `took ${ms} ms`);
      assert.match(s.output(), /"severity":"INFO".*shutting down \(received SIGTERM\)/);
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('`tiny-llm start` serves an existing model directory without rebuilding it', async () => {
    const s = await serve(
      ['--model-dir', tiny.dir, '--port', '0', '--host', '127.0.0.1', '--workers', '1'],
      'start',
    );
    try {
      await waitReady(s.port);
      const res = await fetch(`http://127.0.0.1:${s.port}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'hi', max_new_tokens: 3 }),
      });
      assert.equal(res.status, 200);
      assert.doesNotMatch(s.output(), /creating and training/);
      s.child.kill('SIGTERM');
      assert.equal((await s.exit).code, 0);
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('refuses a missing, truncated or corrupt model directory with a clear message and exit 1', async () => {
    const run = (dir: string) =>
      new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          [bin, 'serve', '--model-dir', dir, '--port', '0', '--host', '127.0.0.1'],
          {
            cwd: repoRoot,
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let stderr = '';
        let stdout = '';
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
        });
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString();
        });
        child.on('exit', (code) => resolve({ code, stderr, stdout }));
      });
    const missing = await run(join(tiny.dir, 'nope'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot serve the model: .*nope/);
    assert.doesNotMatch(missing.stdout, /listening/);

    const broken = await createTinyModel();
    try {
      truncateSync(join(broken.dir, 'model.safetensors'), 1000);
      const truncated = await run(broken.dir);
      assert.equal(truncated.code, 1);
      assert.match(truncated.stderr, /model\.safetensors/);
      assert.doesNotMatch(truncated.stdout, /listening/);
      writeFileSync(join(broken.dir, 'config.json'), '{"n_embd": ');
      const corrupt = await run(broken.dir);
      assert.equal(corrupt.code, 1);
      assert.match(corrupt.stderr, /config\.json/);
      console.log(
        `missing: ${missing.stderr.trim()}\ntruncated: ${truncated.stderr.trim()}\ncorrupt: ${corrupt.stderr.trim()}`,
      );
    } finally {
      broken.remove();
    }
  });
});
