// Faults, against the built server (`bin/tiny-llm.js serve`, as the image runs it) where a server takes part: 100
// clients leaving mid-stream are all cancelled, SIGTERM with 10 streams drains cleanly, a dying worker under load
// costs one request, a broken model never serves; in process, a drain that runs out of time; and a killed or
// disk-full model build leaves the previous model as it was.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT } from '../../scripts/load/serve-process.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { writeDirAtomic } from '../../src/io/atomic.js';
import { loadModelDir, saveModelDir } from '../../src/io/checkpoint.js';
import { defaultTokenizerData } from '../../src/io/tokenizer-files.js';
import { loadServedModel } from '../../src/server/model.js';
import { assertBuildCurrent, type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { createTinyModel, type TinyModel, tinyConfig } from '../helpers/tiny-model.js';
import { metricValue, parseSse, scrape, startTestApp } from '../server/harness.js';

async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<number> {
  const start = performance.now();
  while (!(await check())) {
    if (performance.now() - start > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - start;
}

interface StreamEnd {
  status: number;
  body: string;
  /** ms from the start of the request to its end. */
  endedAt: number;
}

/** A streamed chat completion over a real socket; `onData` sees every chunk and may destroy the request. */
function chatStream(
  port: number,
  maxTokens: number,
  onData: (req: ReturnType<typeof httpRequest>, text: string) => void = () => {},
): Promise<StreamEnd> {
  const body = JSON.stringify({
    messages: [{ role: 'user', content: 'Tell me about the pipeline' }],
    stream: true,
    max_tokens: maxTokens,
  });
  return new Promise((resolve) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    let text = '';
    let status = 0;
    const end = () => resolve({ status, body: text, endedAt: performance.now() });
    req.on('error', end);
    req.on('close', end);
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      res.on('data', (d: Buffer) => {
        text += d.toString();
        onData(req, text);
      });
      res.on('error', end);
      res.on('end', end);
    });
    req.end(body);
  });
}

describe('clients that leave mid-stream', () => {
  let server: BuiltServer;
  before(async () => {
    // n_embd 64: 900 tokens take several times longer than a loaded CI machine needs to notice a disconnect, so a
    // generation that reaches its end did ignore the cancel (with n_embd 16 one could finish first under load). A
    // worker that ignored the flag would be replaced after the cancel grace: counted as a restart.
    server = await startBuiltServer({ workers: 2, queueLimit: 128 }, { nPositions: 1024, nEmbd: 64 });
  });
  after(() => server.close());

  it('100 clients disconnecting after their first bytes: aborted counts 100, no tokens finished, workers idle at once', async () => {
    const before = await scrape(server.url);
    const started = performance.now();
    let left = 0;
    // Each asks for 900 tokens (about a second each); all 100 queue at once and leave on their first bytes.
    const clients = Array.from({ length: 100 }, () =>
      chatStream(server.port, 900, (req) => {
        if (!req.destroyed) {
          left++;
          req.destroy();
        }
      }),
    );
    const deadline = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000).unref());
    const outcome = await Promise.race([Promise.all(clients), deadline]);
    assert.notEqual(
      outcome,
      'timeout',
      `only ${left} of 100 clients got their first bytes within 20 s: cancelled generations keep their workers`,
    );
    const allLeftMs = performance.now() - started;
    const idleMs = await waitFor(
      'the pool to be idle',
      async () => {
        const text = await scrape(server.url);
        return (
          metricValue(text, 'tiny_llm_in_flight_generations') === 0 &&
          metricValue(text, 'tiny_llm_queue_depth') === 0
        );
      },
      2000,
    );
    const text = await scrape(server.url);
    const delta = (name: string) => metricValue(text, name) - metricValue(before, name);
    console.log(
      `100 clients left mid-stream within ${allLeftMs.toFixed(0)} ms; pool idle ${idleMs.toFixed(0)} ms after the last; ` +
        `aborted +${delta('tiny_llm_aborted_generations_total')}, tokens of finished generations +${delta('tiny_llm_generated_tokens_total')}, ` +
        `worker restarts +${delta('tiny_llm_worker_restarts_total')}`,
    );
    assert.equal(left, 100);
    assert.equal(delta('tiny_llm_aborted_generations_total'), 100);
    // Cancelled, not finished: no generation ran on to its 900 tokens, and no worker had to be killed.
    assert.equal(
      delta('tiny_llm_generated_tokens_total'),
      0,
      'generations ran on to the end after their clients left (the aborted counter only counts cancel requests)',
    );
    assert.equal(delta('tiny_llm_worker_restarts_total'), 0);
    // 100 sequential second-long generations on 2 workers would take about 50 s.
    assert.ok(allLeftMs < 15_000, `took ${allLeftMs.toFixed(0)} ms`);
  });
});

describe('SIGTERM with 10 streams in flight', () => {
  it('every stream finishes or ends with an error event within 8 s, new requests get 503, the process exits 0', async () => {
    const server = await startBuiltServer({ workers: 2 }, { nPositions: 1024 });
    try {
      const streams = Array.from({ length: 10 }, () => chatStream(server.port, 900));
      // All ten accepted: two generating, eight queued behind them.
      await waitFor(
        'two running and eight queued',
        async () => {
          const text = await (await fetch(`${server.url}/metrics`)).text();
          return (
            metricValue(text, 'tiny_llm_in_flight_generations') === 2 &&
            metricValue(text, 'tiny_llm_queue_depth') === 8
          );
        },
        10_000,
      );
      const signalled = performance.now();
      server.child.kill('SIGTERM');
      // Once the server has taken the signal (its /ready says so; on a busy machine that can take a while):
      await waitFor('draining', async () => (await fetch(`${server.url}/ready`)).status === 503, 5_000);
      const [late, ready, health] = await Promise.all([
        fetch(`${server.url}/generate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: 'too late', max_new_tokens: 3 }),
        }),
        fetch(`${server.url}/ready`),
        fetch(`${server.url}/health`),
      ]);
      assert.equal(late.status, 503);
      assert.ok(late.headers.get('retry-after'), 'a 503 carries Retry-After');
      assert.equal((await late.json()).error.code, 'shutting_down');
      assert.equal(ready.status, 503);
      const readyBody = await ready.json();
      assert.equal(readyBody.status, 'draining');
      assert.equal(readyBody.error.code, 'shutting_down');
      assert.equal(health.status, 200, 'still alive while draining');

      const ends = await Promise.all(streams);
      const exit = await server.exited;
      const exitMs = performance.now() - signalled;
      let finished = 0;
      let cut = 0;
      for (const end of ends) {
        if (end.status === 503) {
          // Still queued at the deadline: a plain 503 the client can retry elsewhere.
          assert.equal(JSON.parse(end.body).error.code, 'shutting_down');
          cut++;
          continue;
        }
        assert.equal(end.status, 200, end.body.slice(0, 300));
        const { events, done } = parseSse(end.body);
        if (done) finished++;
        else {
          // Cut at the drain deadline: the stream still ends with a proper event, never mid-chunk.
          assert.equal(events.at(-1)?.error?.code, 'shutting_down', end.body.slice(-300));
          cut++;
        }
      }
      const lastEnd = Math.max(...ends.map((e) => e.endedAt)) - signalled;
      console.log(
        `SIGTERM with 2 running + 8 queued streams: ${finished} finished, ${cut} ended at the drain deadline; ` +
          `last stream ended ${lastEnd.toFixed(0)} ms after the signal, exit ${exit.code} after ${exitMs.toFixed(0)} ms`,
      );
      assert.equal(exit.code, 0, server.output().slice(-2000));
      assert.ok(lastEnd < 8500, `the last stream ended ${lastEnd.toFixed(0)} ms after SIGTERM`);
      assert.ok(exitMs < 10_000, `exit ${exitMs.toFixed(0)} ms after SIGTERM`);
    } finally {
      await server.close();
    }
  });
});

describe('a drain that runs out of time (in process: the deadline is shortened)', () => {
  it('the running stream ends with an error event; queued streams and requests get 503 with Retry-After', async () => {
    const t = await startTestApp({ workers: 1, queueLimit: 8 }, { nPositions: 1024 });
    try {
      const stream = () =>
        t.app.inject({
          method: 'POST',
          url: '/v1/chat/completions',
          payload: { messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 900 },
        });
      const running = stream();
      const queued = [stream(), stream()];
      const queuedWhole = t.app.inject({
        method: 'POST',
        url: '/generate',
        payload: { prompt: 'x', max_new_tokens: 900 },
      });
      await waitFor('one running, three queued', () => t.app.generation.pool!.queueDepth === 3, 5000);
      assert.deepEqual(await t.app.generation.drain(50), { cancelled: 4 });
      const first = await running;
      assert.equal(first.statusCode, 200);
      const { events, done } = parseSse(first.body);
      assert.ok(!done);
      assert.equal(events[0].choices[0].delta.role, 'assistant');
      assert.equal(events.at(-1)?.error?.code, 'shutting_down');
      for (const res of [...(await Promise.all(queued)), await queuedWhole]) {
        assert.equal(res.statusCode, 503, res.body);
        assert.equal(res.headers['retry-after'], '1');
        assert.equal(res.json().error.code, 'shutting_down');
      }
    } finally {
      await t.close();
    }
  });
});

describe('a worker dying under load', () => {
  it('costs only the stream it held: that one ends with worker_crashed, the queued ones are served, the pool heals', async () => {
    // The preload ends the pool's first worker on SIGUSR2, as a crash would.
    const server = await startBuiltServer(
      {
        workers: 2,
        queueLimit: 16,
        nodeArgs: ['--require', join(REPO_ROOT, 'test', 'helpers', 'worker-faults.cjs')],
      },
      { nPositions: 1024 },
    );
    try {
      let streaming = 0;
      const seen = new Set<unknown>();
      const streams = Array.from({ length: 6 }, () =>
        chatStream(server.port, 400, (req) => {
          if (!seen.has(req)) {
            seen.add(req);
            streaming++;
          }
        }),
      );
      // Both workers hold a stream that has sent bytes; four wait in the queue.
      await waitFor(
        'two streams under way',
        async () => streaming === 2 && metricValue(await scrape(server.url), 'tiny_llm_queue_depth') === 4,
        10_000,
      );
      const killedAt = performance.now();
      server.child.kill('SIGUSR2');
      const ends = await Promise.all(streams);
      let crashed = 0;
      let done = 0;
      for (const end of ends) {
        assert.equal(end.status, 200, end.body.slice(0, 300));
        const sse = parseSse(end.body);
        if (sse.done) done++;
        else if (sse.events.at(-1)?.error?.code === 'worker_crashed') crashed++;
        assert.ok(!/\bat .*\.(ts|js|cjs):\d+/.test(end.body), 'no stack trace');
      }
      await waitFor(
        'a replacement worker',
        async () => {
          const ready = await fetch(`${server.url}/ready`);
          return ready.status === 200 && (await ready.json()).workers.ready === 2;
        },
        20_000,
      );
      const healMs = performance.now() - killedAt;
      const again = await fetch(`${server.url}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'after the crash', max_new_tokens: 5 }),
      });
      const text = await scrape(server.url);
      console.log(
        `worker killed under load: ${crashed} stream cut with worker_crashed, ${done} finished; both workers ready ${healMs.toFixed(0)} ms after the kill`,
      );
      assert.equal(crashed, 1);
      assert.equal(done, 5);
      assert.equal(again.status, 200, await again.text());
      assert.equal(metricValue(text, 'tiny_llm_worker_restarts_total'), 1);
    } finally {
      await server.close();
    }
  });
});

/** Runs the built `tiny-llm serve` on a model directory that should be refused; resolves with how it ended. */
function serveRefused(dir: string): Promise<{ code: number | null; stderr: string; stdout: string }> {
  assertBuildCurrent();
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'bin', 'tiny-llm.js'),
        'serve',
        '--model-dir',
        dir,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
      ],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

describe('a broken model directory at start', () => {
  it('empty dir, garbage tokenizer, NaN weights, config not matching the weights: exit 1 naming the file, never listening', async () => {
    const made: TinyModel[] = [];
    const copy = async () => {
      const m = await createTinyModel();
      made.push(m);
      return m.dir;
    };
    try {
      const empty = mkdtempSync(join(tmpdir(), 'tiny-llm-empty-'));
      const garbageTokenizer = await copy();
      writeFileSync(join(garbageTokenizer, 'tokenizer.json'), '{"model": ');
      const nanWeights = await copy();
      const weightsFile = join(nanWeights, 'model.safetensors');
      const bytes = readFileSync(weightsFile);
      const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
      bytes.writeFloatLE(Number.NaN, bytes.length - 4);
      assert.ok(bytes.length - 4 >= headerEnd);
      writeFileSync(weightsFile, bytes);
      const wrongShape = await copy();
      const config = JSON.parse(readFileSync(join(wrongShape, 'config.json'), 'utf8'));
      writeFileSync(join(wrongShape, 'config.json'), JSON.stringify({ ...config, n_embd: 32, n_head: 2 }));
      const cases: Array<[string, string, RegExp]> = [
        ['empty directory', empty, /config\.json/],
        ['garbage tokenizer.json', garbageTokenizer, /tokenizer\.json/],
        ['a NaN weight', nanWeights, /model\.safetensors.*non-finite/],
        ['n_embd not matching the weights', wrongShape, /model\.safetensors/],
      ];
      const results = await Promise.all(cases.map(([, dir]) => serveRefused(dir)));
      rmSync(empty, { recursive: true, force: true });
      cases.forEach(([label, , pattern], i) => {
        const r = results[i];
        console.log(`${label}: exit ${r.code}: ${r.stderr.trim()}`);
        assert.equal(r.code, 1, `${label}: ${r.stderr}`);
        assert.match(r.stderr, /cannot serve the model: /, label);
        assert.match(r.stderr, pattern, label);
        assert.doesNotMatch(r.stdout, /listening/, `${label}: the server listened`);
      });
    } finally {
      for (const m of made) m.remove();
    }
  });
});

/** sha256 of every file in a directory, by name. */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir).sort())
    out[name] = createHash('sha256')
      .update(readFileSync(join(dir, name)))
      .digest('hex');
  return out;
}

const leftovers = (parent: string) => readdirSync(parent).filter((n) => n.startsWith('.model.'));

describe('a model build that dies or runs out of disk', () => {
  it('SIGKILL while the weights are being written leaves the previous model intact and loadable', async () => {
    const previous = await createTinyModel({ seed: 7 });
    const before = fingerprint(previous.dir);
    const parent = join(previous.dir, '..');
    const expected = await loadServedModel(previous.dir);
    const killedAt: string[] = [];
    // Two kill points: as soon as the temp directory exists, and once the weights file is being written.
    for (const stage of ['temp dir created', 'weights partly written'] as const) {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', join(REPO_ROOT, 'test/reliability/write-model-child.ts'), previous.dir],
        { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, s) => r(s)));
      const partial = () => {
        const tmp = readdirSync(parent).find((n) => n.startsWith('.model.tmp-'));
        if (!tmp) return null;
        if (stage === 'temp dir created') return tmp;
        try {
          const weights = readdirSync(join(parent, tmp)).find((n) => n.startsWith('.model.safetensors.tmp-'));
          return weights && statSync(join(parent, tmp, weights)).size > 0 ? `${tmp}/${weights}` : null;
        } catch {
          return null;
        }
      };
      let seen: string | null = null;
      await waitFor(
        `${stage} (child output: ${out})`,
        () => (seen = partial()) !== null || child.exitCode !== null,
        30_000,
      );
      child.kill('SIGKILL');
      const signal = await exited;
      assert.equal(signal, 'SIGKILL', `the build finished before it could be killed: ${out}`);
      assert.ok(seen, 'the kill came mid-write');
      killedAt.push(`${stage} (${seen})`);
      assert.deepEqual(fingerprint(previous.dir), before, `${stage}: the model directory changed`);
      const loaded = await loadServedModel(previous.dir);
      assert.deepEqual(loaded.config, expected.config);
      assert.equal(Buffer.compare(Buffer.from(loaded.params.buffer), Buffer.from(expected.params.buffer)), 0);
      // The killed build leaves its temp directory behind (hidden, never served); remove it for the next round.
      for (const name of leftovers(parent)) rmSync(join(parent, name), { recursive: true, force: true });
    }
    previous.remove();
    console.log(`killed mid-build at: ${killedAt.join('; ')}; previous model byte-identical and loadable`);
  });

  it('a fill that fails with ENOSPC leaves the previous directory and no temp directory', async () => {
    const root = mkdtempSync(join(tmpdir(), 'tiny-llm-enospc-'));
    try {
      const dir = join(root, 'model');
      mkdirSync(dir);
      writeFileSync(join(dir, 'config.json'), '{"previous": true}');
      const before = fingerprint(dir);
      const err = await writeDirAtomic(dir, async (tmp) => {
        writeFileSync(join(tmp, 'config.json'), '{"next": true}');
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      }).catch((e: NodeJS.ErrnoException) => e);
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      assert.deepEqual(fingerprint(dir), before);
      assert.deepEqual(leftovers(root), []);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('saving a second model into a full tmpfs fails with ENOSPC and leaves the first model intact', async (t) => {
    const mnt = mkdtempSync(join(tmpdir(), 'tiny-llm-tmpfs-'));
    // 12 MiB holds one tiny model (about 8 MiB with its tokenizer files) but not a second copy beside it.
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', mnt], { encoding: 'utf8' });
    if (mount.status !== 0) {
      rmSync(mnt, { recursive: true, force: true });
      t.skip(
        `cannot mount a tmpfs here (${(mount.stderr || mount.error?.message || '').trim()}); the injected ENOSPC case above still ran`,
      );
      return;
    }
    try {
      const config = tinyConfig(128);
      const tokenizerData = await defaultTokenizerData();
      const params = (seed: number) => {
        const rng = new Rng(seed);
        const p = new Float32Array(parameterLayout(config).total);
        for (let i = 0; i < p.length; i++) p[i] = rng.normal() * 0.02;
        return p;
      };
      const dir = join(mnt, 'model');
      await saveModelDir(dir, { config, params: params(1), tokenizerData });
      const before = fingerprint(dir);
      const err = await saveModelDir(dir, { config, params: params(2), tokenizerData }).catch(
        (e: NodeJS.ErrnoException) => e,
      );
      assert.ok(err instanceof Error, 'the second save should not fit');
      // The io layer wraps the error to name the file; the cause must still say what ran out.
      assert.match((err as Error).message, /ENOSPC/);
      assert.deepEqual(fingerprint(dir), before, 'the first model changed');
      assert.deepEqual(leftovers(mnt), [], 'a temp directory was left on the full disk');
      const loaded = await loadModelDir(dir, { requireTokenizer: true });
      assert.equal(loaded.params[0], params(1)[0]);
      const df = spawnSync('df', ['-k', mnt], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1);
      console.log(
        `ENOSPC on a 12 MiB tmpfs: "${(err as Error).message}"; first model intact; df after: ${df}`,
      );
    } finally {
      spawnSync('umount', [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });
});
