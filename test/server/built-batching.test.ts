// Continuous batching in the built server (`bin/tiny-llm.js serve`): concurrent requests on one worker run together and each gets exactly the text it gets alone; a stream whose client leaves is cancelled while the others finish.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { metricValue, request, scrape } from './harness.js';

/** Requests with their own seeds and sampling: sampled, nucleus, greedy with penalties and bias, with a stop. */
const ASKS = [
  { prompt: 'Once upon a time', max_tokens: 200, seed: 11, temperature: 1 },
  { prompt: 'The weather today', max_tokens: 180, seed: 12, temperature: 0.7, top_p: 0.9 },
  {
    prompt: 'Numbers:',
    max_tokens: 220,
    seed: 13,
    temperature: 0,
    presence_penalty: 0.6,
    logit_bias: { '13': 4 },
  },
  {
    prompt: 'A list of',
    max_tokens: 190,
    seed: 14,
    temperature: 1.2,
    frequency_penalty: 0.3,
    stop: ['\n\n'],
  },
];

async function complete(server: BuiltServer, body: object): Promise<{ text: string; tokens: number }> {
  const res = await request(server.url, { method: 'POST', url: '/v1/completions', payload: body });
  assert.equal(res.statusCode, 200, res.body);
  const json = res.json();
  return { text: json.choices[0].text, tokens: json.usage.completion_tokens };
}

describe('continuous batching in the built server', () => {
  let server: BuiltServer;
  before(async () => {
    // One worker: every concurrent request shares its batch.
    // The tiny test model's layers are below BATCH_MIN_LAYER_PARAMS: batching is asked for explicitly.
    server = await startBuiltServer(
      { workers: 1, queueLimit: 8, args: ['--max-batch', '8'] },
      { nPositions: 1024 },
    );
  });
  after(() => server.close());

  it('N concurrent requests with seeds give exactly the texts each gives alone, and run together on the one worker', async () => {
    const alone = [];
    for (const ask of ASKS) alone.push(await complete(server, ask));
    let most = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        most = Math.max(most, metricValue(await scrape(server.url), 'tiny_llm_in_flight_generations'));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const together = await Promise.all(ASKS.map((ask) => complete(server, ask)));
    polling = false;
    await poll;
    for (let i = 0; i < ASKS.length; i++) {
      assert.equal(together[i].text, alone[i].text, `request ${i} gave other text beside the others`);
      assert.equal(together[i].tokens, alone[i].tokens);
    }
    console.log(
      `${ASKS.length} concurrent requests: texts identical to alone (${alone.map((a) => a.tokens).join(', ')} tokens); at most ${most} generating at once on 1 worker`,
    );
    assert.ok(most >= 2, `the requests never ran together (at most ${most} in flight)`);
    const text = await scrape(server.url);
    assert.equal(metricValue(text, 'tiny_llm_queue_depth'), 0);
  });

  it('a client that leaves mid-stream is cancelled; the generations beside it finish with their own text', async () => {
    const alone = await complete(server, ASKS[0]);
    const controller = new AbortController();
    const leaving = fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Leave', max_tokens: 900, stream: true, seed: 5 }),
      signal: controller.signal,
    }).then(async (res) => {
      const reader = res.body!.getReader();
      await reader.read();
      controller.abort();
    });
    const beside = complete(server, ASKS[0]);
    await leaving.catch(() => {});
    assert.equal((await beside).text, alone.text);
    const start = performance.now();
    while (metricValue(await scrape(server.url), 'tiny_llm_in_flight_generations') > 0) {
      assert.ok(performance.now() - start < 10_000, 'the abandoned stream kept generating');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(metricValue(await scrape(server.url), 'tiny_llm_aborted_generations_total') >= 1);
  });
});
