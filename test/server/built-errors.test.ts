// Errors made by the worker pool keep their status, code, Retry-After and metrics when they reach a client of the built
// server (`bin/tiny-llm.js serve`): queue_full, worker_crashed and workers_down — each crosses from the pool's module
// to the HTTP layer's, which once were two copies of the error class in the build (and a 500 came out).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { repoRoot } from '../helpers/fixtures.js';
import { metricValue, type Reply, request, scrape } from './harness.js';

/** Ends generation workers from outside on SIGUSR2 (see the file). */
const FAULTS = ['--require', join(repoRoot, 'test', 'helpers', 'worker-faults.cjs')];

/** A generation that holds a worker for a second or more (1024-token context). */
const LONG = { prompt: 'Hold the worker', max_new_tokens: 900, seed: 1 };

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const start = performance.now();
  while (!(await check())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The gauge's value now. */
async function gauge(server: BuiltServer, name: string): Promise<number> {
  return metricValue(await scrape(server.url), name);
}

function assertUnavailable(res: Reply, code: string, retryAfter: string): void {
  assert.equal(res.statusCode, 503, res.body);
  assert.equal(res.headers['retry-after'], retryAfter);
  const err = res.json().error;
  assert.deepEqual(
    { type: err.type, code: err.code },
    { type: 'server_error', code },
    `error body: ${res.body}`,
  );
}

describe('queue_full from the built server', () => {
  let server: BuiltServer;
  before(async () => {
    server = await startBuiltServer({ workers: 1, queueLimit: 1 }, { nPositions: 1024 });
  });
  after(() => server.close());

  it('a request beyond the queue gets 503 queue_full with Retry-After 2, and the rejection is counted', async () => {
    const post = (body: object) => request(server.url, { method: 'POST', url: '/generate', payload: body });
    const running = post(LONG);
    await waitFor(
      'the first to run',
      async () => (await gauge(server, 'tiny_llm_in_flight_generations')) === 1,
    );
    const queued = post({ ...LONG, seed: 2 });
    await waitFor('the second to queue', async () => (await gauge(server, 'tiny_llm_queue_depth')) === 1);
    const refused = await request(server.url, {
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { messages: [{ role: 'user', content: 'hi' }] },
    });
    const metrics = await scrape(server.url);
    console.log(`beyond the queue: ${refused.statusCode} ${refused.body}`);
    assertUnavailable(refused, 'queue_full', '2');
    assert.equal(metricValue(metrics, 'tiny_llm_rejected_generations_total', '{reason="queue_full"}'), 1);
    for (const res of await Promise.all([running, queued])) assert.equal(res.statusCode, 200, res.body);
  });
});

describe('worker_crashed and workers_down from the built server', () => {
  it('a job whose worker dies gets 503 worker_crashed; with no replacement the queued one gets 503 workers_down, and so does every later request', async () => {
    const server = await startBuiltServer(
      { workers: 1, queueLimit: 4, nodeArgs: FAULTS, env: { WORKER_FAULTS: 'no-restart' } },
      { nPositions: 1024 },
    );
    try {
      const post = (body: object) => request(server.url, { method: 'POST', url: '/generate', payload: body });
      const running = post(LONG);
      await waitFor('one running', async () => (await gauge(server, 'tiny_llm_in_flight_generations')) === 1);
      // Posted behind the running one: when the worker dies it goes back to the queue, to wait for a worker
      // that never comes (every replacement exits before it is ready; the pool gives up after three).
      const queued = post({ ...LONG, seed: 2 });
      await waitFor('one queued', async () => (await gauge(server, 'tiny_llm_queue_depth')) === 1);
      server.child.kill('SIGUSR2');
      const crashed = await running;
      console.log(`the running job: ${crashed.statusCode} ${crashed.body}`);
      assertUnavailable(crashed, 'worker_crashed', '1');
      const down = await queued;
      console.log(`the queued job: ${down.statusCode} ${down.body}`);
      assertUnavailable(down, 'workers_down', '10');
      const ready = await request(server.url, '/ready');
      assert.equal(ready.statusCode, 503);
      assert.equal(ready.json().status, 'failed');
      assert.equal(ready.json().error.code, 'workers_down');
      assertUnavailable(await post({ prompt: 'later' }), 'workers_down', '10');
      assert.equal((await request(server.url, '/health')).statusCode, 200, 'still alive');
      assert.match(server.output(), /generation worker 0 cannot be restarted/);
    } finally {
      await server.close();
    }
  });

  it('a stream whose worker dies ends with an error event coded worker_crashed, and a new worker serves the next', async () => {
    const server = await startBuiltServer({ workers: 1, nodeArgs: FAULTS }, { nPositions: 1024 });
    try {
      const stream = fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 900 }),
      });
      const res = await stream;
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      // Bytes have arrived: the stream is under way when its worker dies.
      let body = new TextDecoder().decode((await reader.read()).value);
      server.child.kill('SIGUSR2');
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        body += new TextDecoder().decode(value);
      }
      const last = body.trim().split('\n\n').at(-1)!;
      console.log(`the stream's last event: ${last}`);
      assert.ok(!body.includes('[DONE]'));
      assert.equal(JSON.parse(last.slice('data: '.length)).error.code, 'worker_crashed');
      await waitFor(
        'a replacement',
        async () => (await request(server.url, '/ready')).json().workers?.ready === 1,
      );
      const next = await request(server.url, {
        method: 'POST',
        url: '/generate',
        payload: { prompt: 'again', max_new_tokens: 4 },
      });
      assert.equal(next.statusCode, 200, next.body);
      assert.equal(metricValue(await scrape(server.url), 'tiny_llm_worker_restarts_total'), 1);
    } finally {
      await server.close();
    }
  });
});
