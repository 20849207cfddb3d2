// Against what ships (`bin/tiny-llm.js serve` over dist/): every text field a request carries, filled with 256 KiB
// of adversarial text (whitespace, newlines, template markers, repeated stop-string prefixes), never stalls the
// event loop — /health, polled throughout, answers every time within 100 ms — and never gets a 5xx.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type BuiltServer, builtServerAvailable, startBuiltServer } from '../helpers/api-server-process.js';

/** Just under the 256 KiB body limit, leaving room for the JSON around the text. */
const SIZE = 250 * 1024;
/** `unit` repeated to fill `size` bytes of JSON (escapes such as \n count double). */
const fill = (unit: string, size = SIZE) =>
  unit.repeat(Math.floor(size / Buffer.byteLength(JSON.stringify(unit).slice(1, -1))));

let server: BuiltServer;

/** Polls /health until stopped; `take` returns the slowest answer (ms) since the last take, and how many came. */
function pollHealth(url: string): { take(): { worst: number; count: number }; stop(): Promise<void> } {
  let running = true;
  let worst = 0;
  let count = 0;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      const res = await fetch(`${url}/health`);
      await res.arrayBuffer();
      assert.equal(res.status, 200);
      worst = Math.max(worst, performance.now() - started);
      count++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    take() {
      const out = { worst, count };
      worst = 0;
      count = 0;
      return out;
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}

const chatWith = (content: unknown, extra: object = {}) => ({
  messages: [{ role: 'user', content }],
  max_tokens: 4,
  ...extra,
});

/** Each case: a route and a body whose one text field is hostile. */
const CASES: Array<[string, string, unknown]> = [
  ['chat content: spaces', '/v1/chat/completions', chatWith(fill(' '))],
  ['chat content: newlines', '/v1/chat/completions', chatWith(fill('\n'))],
  ['chat content: space-newline runs', '/v1/chat/completions', chatWith(fill(' \n  \t'))],
  ['chat content: CR and CRLF', '/v1/chat/completions', chatWith(fill('\r\r\n'))],
  ['chat content: turn markers', '/v1/chat/completions', chatWith(fill('\nUser:\nBot:'))],
  ['chat content: indented marker lines', '/v1/chat/completions', chatWith(fill('\n    user    '))],
  ['chat content: end-of-text markers', '/v1/chat/completions', chatWith(fill('<|endoftext|>'))],
  [
    'chat system message: spaces',
    '/v1/chat/completions',
    {
      messages: [
        { role: 'system', content: fill(' ') },
        { role: 'user', content: 'hi' },
      ],
      max_tokens: 2,
    },
  ],
  [
    'chat content parts: 64 parts of spaces and newlines',
    '/v1/chat/completions',
    chatWith(Array.from({ length: 64 }, () => ({ type: 'text', text: fill(' \n', SIZE / 64 - 40) }))),
  ],
  [
    'chat: 512 messages of markers',
    '/v1/chat/completions',
    {
      messages: Array.from({ length: 512 }, (_, i) => ({
        role: i % 2 ? 'assistant' : 'user',
        content: fill('\nUser: ', 440),
      })),
      max_tokens: 2,
    },
  ],
  [
    'stop: 16 strings sharing a 255-character prefix, over a prompt of that prefix',
    '/v1/completions',
    {
      prompt: fill('a', SIZE - 16 * 300),
      stop: Array.from({ length: 16 }, (_, i) => `${'a'.repeat(255)}${String.fromCharCode(98 + i)}`),
      max_tokens: 4,
    },
  ],
  ['completions prompt: spaces', '/v1/completions', { prompt: fill(' '), max_tokens: 2 }],
  ['completions prompt: one long word', '/v1/completions', { prompt: fill('a'), max_tokens: 2 }],
  [
    'completions prompt batch: 64 runs of spaces',
    '/v1/completions',
    { prompt: Array(64).fill(fill(' ', SIZE / 64 - 16)) },
  ],
  [
    'completions echo scoring: spaces',
    '/v1/completions',
    { prompt: fill(' \n'), echo: true, max_tokens: 0, logprobs: 5 },
  ],
  ['/generate prompt: spaces and newlines', '/generate', { prompt: fill(' \n') }],
  ['/tokenize content: spaces', '/tokenize', { content: fill(' ') }],
  ['/tokenize content: one long word', '/tokenize', { content: fill('é') }],
  ['/tokenize messages: markers', '/tokenize', { messages: [{ role: 'user', content: fill('\nBot:') }] }],
  [
    '/detokenize: 40 000 ids',
    '/detokenize',
    { tokens: Array.from({ length: 40_000 }, (_, i) => (i * 7919) % 50257) },
  ],
  ['/apply-template: CR runs', '/apply-template', { messages: [{ role: 'user', content: fill('\r') }] }],
];

describe('hostile text against the built server', {
  skip: builtServerAvailable ? false : 'needs `npm run build`',
}, () => {
  before(async () => {
    // One worker: its tokenizing takes one core, leaving the other to the event loop and this client.
    server = await startBuiltServer(['--workers', '1']);
  });
  after(async () => {
    await server.stop();
  });

  it('every text field with 256 KiB of adversarial text: no 5xx, and /health answers within 100 ms throughout', async () => {
    // The client's first requests set up its connection pool: not the server's time.
    for (let i = 0; i < 5; i++) await (await fetch(`${server.url}/health`)).arrayBuffer();
    const poll = pollHealth(server.url);
    const outcomes: string[] = [];
    let worst = 0;
    let total = 0;
    /** Sends one case and returns the slowest /health answer meanwhile. */
    const run = async (name: string, route: string, body: unknown): Promise<number> => {
      const payload = JSON.stringify(body);
      assert.ok(payload.length <= 256 * 1024, `${name}: ${payload.length} bytes`);
      poll.take();
      const started = performance.now();
      const res = await fetch(`${server.url}${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: payload,
      });
      const text = await res.text();
      assert.ok(res.status < 500, `${name}: ${res.status} ${text.slice(0, 200)}`);
      if (res.status !== 200) assert.ok(JSON.parse(text).error.message, name);
      // Let the poll see the end of this request's work before moving on.
      await new Promise((r) => setTimeout(r, 30));
      const health = poll.take();
      total += health.count;
      outcomes.push(
        `${name} → ${res.status} in ${(performance.now() - started).toFixed(0)} ms; /health ${health.count}× slowest ${health.worst.toFixed(1)} ms`,
      );
      return health.worst;
    };
    try {
      for (const [name, route, body] of CASES) {
        let slowest = await run(name, route, body);
        // A stall the request causes comes back every time; a busy machine's hiccup does not: one retry.
        if (slowest >= 100) slowest = Math.min(slowest, await run(`${name} (again)`, route, body));
        worst = Math.max(worst, slowest);
      }
    } finally {
      await poll.stop();
      console.log(outcomes.join('\n'));
    }
    console.log(`/health: ${total} answers while the hostile requests ran, slowest ${worst.toFixed(1)} ms`);
    assert.ok(worst < 100, `/health took ${worst.toFixed(1)} ms`);
  });
});
