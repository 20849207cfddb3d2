// The worker pool under pressure: a full queue answers 503, /health stays fast while every worker is busy,
// a client that disconnects frees its worker at once, and a worker that dies is replaced without hanging anyone.
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { requestKvBytes } from '../../src/server/workers/kv-budget.js';
import { STREAM_FLUSH_MS } from '../../src/server/workers/protocol.js';
import { metricValue, scrape, startTestApp, type TestApp } from './harness.js';

let t: TestApp;
let base: string;

// A 1024-token context makes one generation long enough (~1 s) to hold a worker while the test acts.
before(async () => {
  // One generation at a time (batch 1): queueing, cancelling and crashes one job at a time.
  t = await startTestApp({ workers: 1, queueLimit: 1, cancelGraceMs: 2000, batch: 1 }, { nPositions: 1024 });
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
});
after(() => t.close());

const longJob = {
  prompt: 'Hold the worker',
  maxNewTokens: 1000,
  temperature: 1,
  topK: 50,
  topP: 0.95,
  repetitionPenalty: 1,
  seed: 1,
  stop: [],
};

async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<number> {
  const start = performance.now();
  while (!(await check())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - start;
}

describe('bounded queue', () => {
  it('answers 503 with Retry-After in the error shape when the queue is full', async () => {
    const pool = t.app.generation.pool!;
    const running = t.app.generation.submit(longJob);
    const waiting = t.app.generation.submit(longJob);
    assert.equal(pool.queueDepth, 1);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { messages: [{ role: 'user', content: 'hi' }] },
    });
    assert.equal(res.statusCode, 503, res.body);
    assert.equal(res.headers['retry-after'], '2');
    const err = res.json().error;
    assert.equal(err.type, 'server_error');
    assert.equal(err.code, 'queue_full');
    const text = await scrape(t.app);
    assert.equal(metricValue(text, 'tiny_llm_queue_depth'), 1);
    assert.equal(metricValue(text, 'tiny_llm_in_flight_generations'), 1);
    assert.equal(metricValue(text, 'tiny_llm_rejected_generations_total', '{reason="queue_full"}'), 1);
    waiting.cancel();
    running.cancel();
    assert.equal((await waiting.result).cancelled, true);
    assert.equal((await running.result).cancelled, true);
    await pool.idle();
  });
});

describe('worker messages', () => {
  it('a non-streamed job posts no token message (its time to first token rides on the outcome); a streamed one posts its text coalesced, at most one message per STREAM_FLUSH_MS after the first', async () => {
    const pool = t.app.generation.pool!;
    const job = { ...longJob, maxNewTokens: 40, stop: [] };
    const before = pool.tokenMessages;
    const ttftBefore = metricValue(await scrape(t.app), 'tiny_llm_time_to_first_token_seconds_count');
    const quiet = await t.app.generation.submit(job).result;
    const quietMessages = pool.tokenMessages - before;
    const ttftAfter = metricValue(await scrape(t.app), 'tiny_llm_time_to_first_token_seconds_count');
    assert.equal(ttftAfter - ttftBefore, 1, 'the unstreamed job still records its time to first token');
    const texts: string[] = [];
    const mid = pool.tokenMessages;
    const submitted = performance.now();
    const streamed = await t.app.generation.submit(job, { onToken: (text) => texts.push(text) }).result;
    const elapsedMs = performance.now() - submitted;
    const streamMessages = pool.tokenMessages - mid;
    // The first text at once, then one message per flush interval that passed, and the rest at the end.
    const bound = 2 + Math.ceil(elapsedMs / STREAM_FLUSH_MS);
    console.log(
      `${quiet.completionTokens} tokens: ${quietMessages} message(s) unstreamed, ${streamMessages} streamed in ${elapsedMs.toFixed(0)} ms (bound ${bound})`,
    );
    assert.equal(quiet.completionTokens, 40);
    assert.equal(quietMessages, 0);
    assert.equal(streamed.text, quiet.text, 'same seed, same text either way');
    assert.equal(texts.join(''), streamed.text, 'the streamed pieces add up to the text');
    assert.ok(streamMessages >= 1);
    assert.ok(streamMessages <= bound, `${streamMessages} messages > ${bound}`);
  });
});

describe('event loop stays free', () => {
  it('/health answers in milliseconds while every worker is generating', async () => {
    // The client's first request sets up fetch itself (~100+ ms on a busy machine): not the server's time.
    await (await fetch(`${base}/health`)).text();
    const job = t.app.generation.submit(longJob);
    await waitFor('the worker to start', () => t.app.generation.pool!.busyWorkers === 1);
    const times: number[] = [];
    let answeredWhileBusy = 0;
    const generating = () => job.state !== 'ended';
    for (let i = 0; i < 20 && generating(); i++) {
      const start = performance.now();
      const res = await fetch(`${base}/health`);
      assert.equal(res.status, 200);
      await res.text();
      times.push(performance.now() - start);
      if (generating()) answeredWhileBusy++;
    }
    job.cancel();
    await job.result;
    times.sort((a, b) => a - b);
    console.log(
      `/health while the only worker generates: ${answeredWhileBusy} answered before it finished, ` +
        `median ${times[times.length >> 1].toFixed(1)} ms, max ${times.at(-1)!.toFixed(1)} ms`,
    );
    // Generation on the event loop would let no probe through until the whole generation ended.
    assert.ok(answeredWhileBusy >= 5, `only ${answeredWhileBusy} probes were answered during the generation`);
  });
});

/** Opens a streamed chat completion over a real socket; `firstData` resolves on its first body bytes. */
function openStream(maxTokens: number): { firstData: Promise<void>; leave: () => void } {
  const body = JSON.stringify({
    messages: [{ role: 'user', content: 'go' }],
    stream: true,
    max_tokens: maxTokens,
    seed: 3,
  });
  const req = httpRequest(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  });
  const firstData = new Promise<void>((resolve, reject) => {
    req.on('response', (res) => {
      if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
      res.once('data', () => resolve());
    });
  });
  req.on('error', () => {});
  req.end(body);
  return { firstData, leave: () => req.destroy() };
}

/** Opens a streamed chat completion and destroys the socket after the first body bytes. */
async function streamThenDisconnect(maxTokens: number): Promise<void> {
  const stream = openStream(maxTokens);
  await stream.firstData;
  stream.leave();
}

describe('client disconnect', () => {
  it('cancels the generation: the aborted counter counts it and the worker is free right after', async () => {
    const before = await scrape(t.app);
    await streamThenDisconnect(900);
    const freedMs = await waitFor('the worker to be idle', () => t.app.generation.pool!.inFlight === 0, 3000);
    const text = await scrape(t.app);
    const aborted =
      metricValue(text, 'tiny_llm_aborted_generations_total') -
      metricValue(before, 'tiny_llm_aborted_generations_total');
    console.log(`worker free ${freedMs.toFixed(1)} ms after the client left; aborted +${aborted}`);
    assert.equal(aborted, 1);
    assert.equal(metricValue(text, 'tiny_llm_in_flight_generations'), 0);
    // Finished generations add to the token counter; a cancelled one must not have run to its 900 tokens.
    assert.equal(
      metricValue(text, 'tiny_llm_generated_tokens_total') -
        metricValue(before, 'tiny_llm_generated_tokens_total'),
      0,
    );
  });

  it('several clients leaving mid-stream are each cancelled, queued ones included', async () => {
    const before = await scrape(t.app);
    // One worker and a queue of one: the first stream runs, the second waits; both clients leave.
    // The first client stays connected until the second is queued: leaving on its first bytes could
    // cancel it before the worker was ever seen busy (the race that failed CI once).
    const first = openStream(900);
    await first.firstData;
    await waitFor('the first stream to run', () => t.app.generation.pool!.busyWorkers === 1);
    const body = JSON.stringify({
      messages: [{ role: 'user', content: 'wait' }],
      stream: true,
      max_tokens: 900,
    });
    const queued = httpRequest(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    queued.on('error', () => {});
    queued.end(body);
    await waitFor('the second to queue', () => t.app.generation.pool!.queueDepth === 1);
    queued.destroy();
    first.leave();
    await waitFor(
      'all idle',
      () => t.app.generation.pool!.inFlight === 0 && t.app.generation.pool!.queueDepth === 0,
      3000,
    );
    const text = await scrape(t.app);
    assert.equal(
      metricValue(text, 'tiny_llm_aborted_generations_total') -
        metricValue(before, 'tiny_llm_aborted_generations_total'),
      2,
    );
  });
});

describe('worker death', () => {
  it('a request whose worker dies gets a clean 503, a new worker takes over, and the next request succeeds', async () => {
    const pool = t.app.generation.pool!;
    const pending = t.app.inject({
      method: 'POST',
      url: '/generate',
      payload: { prompt: 'die', max_new_tokens: 900 },
    });
    await waitFor('the worker to start', () => pool.busyWorkerIndex() >= 0);
    await pool.terminateWorker(pool.busyWorkerIndex());
    const res = await pending;
    assert.equal(res.statusCode, 503, res.body);
    assert.ok(res.headers['retry-after']);
    assert.deepEqual(res.json().error.code, 'worker_crashed');
    assert.ok(!res.body.includes('at '), 'no stack trace');
    const recoveredMs = await waitFor(
      'a replacement worker',
      () => pool.readyWorkers === 1 && pool.busyWorkers === 0 && pool.replacements === 1,
      20000,
    );
    const again = await t.app.inject({
      method: 'POST',
      url: '/generate',
      payload: { prompt: 'alive?', max_new_tokens: 5 },
    });
    assert.equal(again.statusCode, 200, again.body);
    const text = await scrape(t.app);
    assert.equal(metricValue(text, 'tiny_llm_worker_restarts_total'), 1);
    console.log(`replacement worker ready ${recoveredMs.toFixed(0)} ms after the crash`);
  });

  it('a stream whose worker dies ends with an error event instead of hanging', async () => {
    const pool = t.app.generation.pool!;
    await waitFor(
      'a ready worker',
      async () => (await t.app.inject('/ready')).statusCode === 200 && pool.busyWorkers === 0,
      20000,
    );
    const pending = t.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 900 },
    });
    await waitFor('the worker to start', () => pool.busyWorkerIndex() >= 0);
    await new Promise((r) => setTimeout(r, 20));
    await pool.terminateWorker(pool.busyWorkerIndex());
    const res = await pending;
    // The kill can land before the worker accepted the prompt (headers not sent yet: a 503) or after the
    // stream began (a 200 whose last event is the error). Either way the client gets a clean, named error.
    // test/reliability/faults.test.ts kills a worker only after streamed bytes arrived, covering the second case.
    if (res.statusCode === 503) {
      assert.equal(JSON.parse(res.body).error.code, 'worker_crashed');
      return;
    }
    assert.equal(res.statusCode, 200);
    const last = res.body.trim().split('\n\n').at(-1)!;
    assert.ok(!res.body.includes('[DONE]'));
    assert.equal(JSON.parse(last.slice(6)).error.code, 'worker_crashed');
  });
});

describe('continuous batching on one worker', () => {
  const asks = [
    { ...longJob, prompt: 'Once upon a time', maxNewTokens: 40, seed: 2 },
    { ...longJob, prompt: 'The weather', maxNewTokens: 30, seed: 3, temperature: 0.7, topK: 0, topP: 0.9 },
    {
      ...longJob,
      prompt: 'Numbers:',
      maxNewTokens: 35,
      seed: 4,
      temperature: 0,
      presencePenalty: 0.5,
      logitBias: [[13, 5]] as Array<[number, number]>,
      logprobs: 2,
    },
  ];

  it('jobs join the running batch at its next step, each gets the tokens and text it gets alone, and a cancel stops only its own', async () => {
    const p = await startTestApp({ workers: 1, queueLimit: 4, batch: 4 }, { nPositions: 1024 });
    try {
      const gen = p.app.generation;
      const pool = gen.pool!;
      const alone = [];
      for (const ask of asks) alone.push(await gen.submit(ask).result);
      const long = gen.submit(longJob);
      await waitFor('the long job to run', () => long.tokens > 0 || pool.busyWorkers === 1);
      const together = asks.map((ask) => gen.submit(ask));
      // One worker runs all four: none waits in the queue.
      assert.equal(pool.inFlight, 4);
      assert.equal(pool.queueDepth, 0);
      assert.equal(pool.busyWorkers, 1);
      const results = await Promise.all(together.map((j) => j.result));
      assert.equal(long.state, 'running', 'the long job ended before the others ran beside it');
      for (let i = 0; i < asks.length; i++) {
        assert.equal(results[i].text, alone[i].text, `request ${i} gave other text beside the others`);
        assert.equal(results[i].completionTokens, alone[i].completionTokens);
        assert.deepEqual(results[i].logprobs, alone[i].logprobs);
      }
      assert.ok(results[2].logprobs && results[2].logprobs.length > 0, 'no log-probabilities came back');
      long.cancel();
      const stopped = await long.result;
      assert.equal(stopped.cancelled, true);
      assert.ok(stopped.completionTokens < 1000);
      console.log(
        `3 sequences beside a long one: texts identical to alone; the long one cancelled after ${stopped.completionTokens} tokens`,
      );
      await pool.idle();
    } finally {
      await p.close();
    }
  });

  it('a KV-cache budget bounds what runs: a job beyond it waits in the queue (then 503 queue_full), and runs once memory is freed', async () => {
    const probe = await startTestApp({ workers: 1, queueLimit: 1, batch: 8 }, { nPositions: 1024 });
    const config = probe.app.generation.model!.config;
    await probe.close();
    // Room for one long job's KV cache only.
    const oneLong = requestKvBytes(longJob, config);
    const p = await startTestApp(
      { workers: 1, queueLimit: 1, batch: 8, kvCacheBytes: oneLong },
      { nPositions: 1024 },
    );
    try {
      const gen = p.app.generation;
      const pool = gen.pool!;
      assert.equal(pool.kvBudgetBytes, oneLong);
      const first = gen.submit(longJob);
      assert.equal(pool.kvReservedBytes, oneLong);
      const second = gen.submit({ ...longJob, seed: 2 });
      assert.equal(pool.inFlight, 1, 'the second ran beyond the budget');
      assert.equal(pool.queueDepth, 1);
      const refused = await p.app.inject({
        method: 'POST',
        url: '/v1/completions',
        payload: { prompt: 'hi', max_tokens: 5 },
      });
      assert.equal(refused.statusCode, 503, refused.body);
      assert.equal(refused.json().error.code, 'queue_full');
      // Cancelled (or, on a slow machine, ended by itself): its memory is free, and the second leaves the queue.
      first.cancel();
      await first.result;
      await waitFor('the second to run', () => second.state !== 'queued');
      if (second.state === 'running') assert.equal(pool.kvReservedBytes, oneLong);
      second.cancel();
      await second.result;
      await pool.idle();
      assert.equal(pool.kvReservedBytes, 0);
    } finally {
      await p.close();
    }
  });
});
