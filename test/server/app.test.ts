// The server contract against the built server (`bin/tiny-llm.js serve`, as the image runs it): every route and error
// path, shapes, SSE framing, stream = non-stream, stops, usage, limits. Two implementation checks build the app in process.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parameterLayout } from '../../src/engine/layout.js';
import { CHAT_STOP, formatChat, formatPrompt } from '../../src/generate/chat-template.js';
import { defaultTokenizerData } from '../../src/io/tokenizer-files.js';
import { buildApp } from '../../src/server/app.js';
import { Gpt2Tokenizer } from '../../src/tokenizer/gpt2-bpe.js';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import {
  metricValue,
  parseSse,
  type RequestSpec,
  request,
  SYSTEM_PROMPT,
  scrape,
  startTestApp,
} from './harness.js';

let server: BuiltServer;
let tokenizer: Gpt2Tokenizer;
const CONTEXT = 128;

before(async () => {
  server = await startBuiltServer({ systemPrompt: SYSTEM_PROMPT });
  tokenizer = new Gpt2Tokenizer(await defaultTokenizerData());
});
after(() => server.close());

function send(spec: RequestSpec | string) {
  return request(server.url, spec);
}

function post(url: string, payload: unknown, headers: Record<string, string> = {}) {
  return send({ method: 'POST', url, payload, headers });
}

/** Asserts the OpenAI error shape and returns its `error` object. */
function errorOf(res: { statusCode: number; body: string }, status: number) {
  assert.equal(res.statusCode, status, res.body);
  const body = JSON.parse(res.body);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(!/\bat .*\.(ts|js):\d+/.test(res.body), 'no stack trace in the response');
  return body.error as { message: string; type: string; param: string | null; code: string | null };
}

const chat = (extra: object = {}) => ({
  messages: [{ role: 'user', content: 'Hello there' }],
  seed: 42,
  ...extra,
});

describe('probes, models and security headers', () => {
  it('GET /health is ok and /ready is ready once the workers are up', async () => {
    assert.deepEqual((await send('/health')).json(), { status: 'ok' });
    const ready = await send('/ready');
    assert.equal(ready.statusCode, 200);
    assert.deepEqual(ready.json(), { status: 'ready', workers: { ready: 2, total: 2 } });
  });

  it('GET /v1/models lists tiny-llm in the OpenAI shape', async () => {
    const body = (await send('/v1/models')).json();
    assert.equal(body.object, 'list');
    assert.equal(body.data.length, 1);
    assert.equal(body.data[0].id, 'tiny-llm');
    assert.equal(body.data[0].object, 'model');
    assert.equal(body.data[0].owned_by, 'tiny-llm-cicd');
    assert.equal(typeof body.data[0].created, 'number');
  });

  it('every response carries the contract CSP and no-sniff/deny-framing headers', async () => {
    const res = await send('/health');
    assert.equal(
      res.headers['content-security-policy'],
      "default-src 'self';script-src 'self';style-src 'self';img-src 'self' data:;connect-src 'self';object-src 'none';base-uri 'none';frame-ancestors 'none'",
    );
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['x-frame-options'], 'DENY');
  });

  it('GET /api/model reports the config, parameter count, defaults and system prompt', async () => {
    const body = (await send('/api/model')).json();
    const c = server.model!.config;
    assert.deepEqual(body.config, {
      vocab_size: c.vocabSize,
      n_positions: c.nPositions,
      n_embd: c.nEmbd,
      n_layer: c.nLayer,
      n_head: c.nHead,
    });
    assert.equal(body.parameters, parameterLayout(c).total);
    assert.equal(body.training, null, 'no training.json in a random model');
    assert.equal(body.source.kind, 'unknown', 'nor a source.json: the model says it cannot tell');
    assert.deepEqual(body.defaults, { temperature: 1, top_k: 50, top_p: 0.95, max_tokens: 50 });
    assert.equal(body.system_prompt, SYSTEM_PROMPT);
    const svg = await send('/api/model/loss-curve.svg');
    errorOf(svg, 404);
  });
});

describe('POST /generate (the original API)', () => {
  it('answers {response} with the original template; the same seed gives the same reply', async () => {
    const a = await post('/generate', { prompt: 'Hi bot', seed: 7 });
    const b = await post('/generate', { prompt: 'Hi bot', seed: 7 });
    assert.equal(a.statusCode, 200, a.body);
    assert.deepEqual(Object.keys(a.json()), ['response']);
    assert.equal(typeof a.json().response, 'string');
    assert.equal(a.json().response, b.json().response);
    const c = await post('/generate', { prompt: 'Hi bot', seed: 8 });
    assert.notEqual(c.json().response, a.json().response, 'another seed gives another reply');
  });

  it('uses 50 new tokens by default and the system prompt in the template (seen through the token counts)', async () => {
    const before = await scrape(server.url);
    const res = await post('/generate', { prompt: 'Count me', seed: 3, temperature: 0 });
    assert.equal(res.statusCode, 200);
    const generated =
      metricValue(await scrape(server.url), 'tiny_llm_generated_tokens_total') -
      metricValue(before, 'tiny_llm_generated_tokens_total');
    // 50 unless the model produced "\nUser:" or end-of-text first (both end the reply early).
    assert.ok(generated >= 1 && generated <= 50, `generated ${generated}`);
    const promptTokens = tokenizer.encode(formatPrompt(SYSTEM_PROMPT, 'Count me')).length;
    const tooLong = await post('/generate', {
      prompt: 'Count me',
      max_new_tokens: CONTEXT - promptTokens + 1,
    });
    const err = errorOf(tooLong, 400);
    assert.equal(err.code, 'context_length_exceeded');
    assert.match(err.message, new RegExp(`\\b${promptTokens} in the prompt`));
    assert.match(err.message, new RegExp(`\\b${CONTEXT - promptTokens + 1} for the completion`));
    assert.match(err.message, new RegExp(`maximum context length is ${CONTEXT}`));
    assert.equal(err.param, 'max_new_tokens');
  });

  it('rejects a missing or empty prompt naming the field', async () => {
    assert.equal(errorOf(await post('/generate', {}), 400).param, 'prompt');
    assert.equal(errorOf(await post('/generate', { prompt: '' }), 400).param, 'prompt');
    assert.equal(errorOf(await post('/generate', { prompt: 5 }), 400).param, 'prompt');
  });
});

describe('POST /v1/chat/completions', () => {
  it('non-stream: OpenAI shape, usage counts the templated prompt, finish_reason length at max_tokens', async () => {
    const res = await post('/v1/chat/completions', chat({ max_tokens: 6, temperature: 0 }));
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.match(body.id, /^chatcmpl-/);
    assert.equal(body.object, 'chat.completion');
    assert.equal(body.model, 'tiny-llm');
    assert.equal(typeof body.created, 'number');
    assert.match(body.system_fingerprint, /^fp_/);
    assert.equal(body.choices.length, 1);
    assert.equal(body.choices[0].message.role, 'assistant');
    assert.equal(typeof body.choices[0].message.content, 'string');
    const promptTokens = tokenizer.encode(
      formatChat(SYSTEM_PROMPT, [{ role: 'user', content: 'Hello there' }]),
    ).length;
    assert.equal(body.usage.prompt_tokens, promptTokens);
    assert.equal(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens);
    if (body.choices[0].finish_reason === 'length') assert.equal(body.usage.completion_tokens, 6);
    else assert.ok(body.usage.completion_tokens <= 6);
  });

  it('stream: SSE headers and framing, role chunk first, finish chunk, usage chunk, [DONE]; text equals non-stream', async () => {
    const request = chat({ max_tokens: 40, seed: 1234 });
    const whole = (await post('/v1/chat/completions', request)).json();
    const res = await post('/v1/chat/completions', {
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    assert.equal(res.headers['cache-control'], 'no-cache');
    assert.equal(res.headers['x-accel-buffering'], 'no');
    const { events, done } = parseSse(res.body);
    assert.ok(done, 'ends with [DONE]');
    assert.deepEqual(events[0].choices[0].delta, { role: 'assistant', content: '' });
    const contentChunks = events.slice(1, -2);
    for (const e of events) {
      assert.equal(e.object, 'chat.completion.chunk');
      assert.equal(e.id, events[0].id);
    }
    const text = contentChunks.map((e) => e.choices[0].delta.content).join('');
    const finish = events[events.length - 2];
    assert.deepEqual(finish.choices[0].delta, {});
    assert.equal(finish.choices[0].finish_reason, whole.choices[0].finish_reason);
    const usage = events[events.length - 1];
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, whole.usage);
    console.log(
      `streamed ${contentChunks.length} chunks, ${text.length} chars; identical to non-stream: ${text === whole.choices[0].message.content}`,
    );
    assert.equal(text, whole.choices[0].message.content);
    assert.ok(contentChunks.length > 1, 'text arrives in several chunks');
  });

  it('stream writes (in process, counting the writes): the finish chunk, the usage chunk and [DONE] leave in one write, and a stream takes a few writes, not one a token', async () => {
    const own = await startTestApp({ workers: 1 });
    try {
      const writes: string[] = [];
      own.app.addHook('onRequest', (_request, reply, done) => {
        const raw = reply.raw;
        const write = raw.write.bind(raw) as (...args: unknown[]) => boolean;
        raw.write = ((chunk: unknown, ...rest: unknown[]) => {
          writes.push(String(chunk));
          return write(chunk, ...rest);
        }) as typeof raw.write;
        done();
      });
      const started = performance.now();
      const res = await own.app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: chat({ max_tokens: 40, seed: 1234, stream: true, stream_options: { include_usage: true } }),
      });
      const elapsedMs = performance.now() - started;
      assert.equal(res.statusCode, 200);
      const { events, done } = parseSse(res.body);
      assert.ok(done);
      const last = writes.at(-1) ?? '';
      console.log(
        `${events.length} events in ${writes.length} writes over ${elapsedMs.toFixed(0)} ms; the last: ${JSON.stringify(last.slice(-60))}`,
      );
      assert.match(last, /"finish_reason":"(stop|length)"/, 'the finish chunk went out on its own');
      assert.match(last, /"usage":\{/, 'the usage chunk went out on its own');
      assert.ok(last.endsWith('data: [DONE]\n\n'));
      // The first text at once, then one write per 10 ms flush at most, and the end.
      assert.ok(writes.length <= 3 + Math.ceil(elapsedMs / 10), `${writes.length} writes in ${elapsedMs} ms`);
    } finally {
      await own.close();
    }
  });

  it('stop sequences end the reply before the stop text, in both modes, with finish_reason stop', async () => {
    const base = chat({ max_tokens: 40, seed: 99 });
    const full = (await post('/v1/chat/completions', base)).json().choices[0].message.content as string;
    assert.ok(full.length >= 12, `need a longer reply to cut: ${JSON.stringify(full)}`);
    const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
    const expected = full.slice(0, full.indexOf(stop)).trimStart();
    const cut = (await post('/v1/chat/completions', { ...base, stop: [stop] })).json();
    assert.equal(cut.choices[0].message.content, expected);
    assert.equal(cut.choices[0].finish_reason, 'stop');
    const streamed = parseSse((await post('/v1/chat/completions', { ...base, stop, stream: true })).body);
    const text = streamed.events.map((e) => e.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, expected);
    assert.equal(streamed.events.at(-1)?.choices[0].finish_reason, 'stop');
  });

  it('multi-turn messages map onto the chat template (prompt token count), system messages replace the default', async () => {
    const messages = [
      { role: 'system', content: 'Be terse.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: [{ type: 'text', text: 'How are you?' }] },
    ];
    const res = (await post('/v1/chat/completions', { messages, max_tokens: 1, seed: 1 })).json();
    const expected = formatChat(SYSTEM_PROMPT, [
      { role: 'system', content: 'Be terse.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'How are you?' },
    ]);
    assert.ok(expected.startsWith('Be terse.\nUser: Hi\nBot: Hello!\nUser: How are you?\nBot:'));
    assert.equal(res.usage.prompt_tokens, tokenizer.encode(expected).length);
    assert.deepEqual(CHAT_STOP, ['\nUser:']);
  });

  it('max_completion_tokens counts like max_tokens; prompt + max over the context is a 400 naming both counts', async () => {
    const promptTokens = tokenizer.encode(
      formatChat(SYSTEM_PROMPT, [{ role: 'user', content: 'Hello there' }]),
    ).length;
    const fits = (
      await post('/v1/chat/completions', chat({ max_completion_tokens: CONTEXT - promptTokens }))
    ).json();
    assert.ok(fits.usage.completion_tokens <= CONTEXT - promptTokens);
    const res = await post('/v1/chat/completions', chat({ max_tokens: CONTEXT - promptTokens + 1 }));
    const err = errorOf(res, 400);
    assert.equal(err.type, 'invalid_request_error');
    assert.equal(err.code, 'context_length_exceeded');
    assert.equal(err.param, 'max_tokens');
    assert.match(
      err.message,
      new RegExp(`${promptTokens} in the prompt \\+ ${CONTEXT - promptTokens + 1} for the completion`),
    );
    assert.match(err.message, /maximum context length is 128 tokens/);
    const streamed = await post('/v1/chat/completions', chat({ max_tokens: 1000, stream: true }));
    assert.equal(errorOf(streamed, 400).code, 'context_length_exceeded', 'a stream still gets a real 400');
    const long = await post('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'word '.repeat(200) }],
    });
    assert.equal(
      errorOf(long, 400).code,
      'context_length_exceeded',
      'an over-long prompt is refused, not truncated',
    );
  });

  it('without max_tokens the reply may use the rest of the context', async () => {
    const body = (await post('/v1/chat/completions', chat({ temperature: 0 }))).json();
    assert.ok(body.usage.total_tokens <= CONTEXT);
    if (body.choices[0].finish_reason === 'length') assert.equal(body.usage.total_tokens, CONTEXT);
  });

  it('bad fields are 400s naming the field', async () => {
    const cases: Array<[object, string]> = [
      [{}, 'messages'],
      [{ messages: 'hi' }, 'messages'],
      [{ messages: [] }, 'messages'],
      [{ messages: [{ role: 'robot', content: 'x' }] }, 'messages[0].role'],
      [{ messages: [{ role: 'user' }] }, 'messages[0].content'],
      [chat({ temperature: 3 }), 'temperature'],
      [chat({ temperature: '1' }), 'temperature'],
      [chat({ top_p: 0 }), 'top_p'],
      [chat({ top_k: -1 }), 'top_k'],
      [chat({ top_k: 1.5 }), 'top_k'],
      [chat({ max_tokens: 0 }), 'max_tokens'],
      [chat({ max_tokens: 1e300 }), 'max_tokens'],
      [chat({ seed: 0.5 }), 'seed'],
      [chat({ n: 9 }), 'n'],
      [chat({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }), 'stop'],
      [chat({ stop: '' }), 'stop'],
      [chat({ stream: 'yes' }), 'stream'],
    ];
    for (const [payload, field] of cases) {
      const err = errorOf(await post('/v1/chat/completions', payload), 400);
      assert.equal(err.param, field, `${JSON.stringify(payload)} → ${err.message}`);
      assert.equal(err.type, 'invalid_request_error');
      assert.ok(err.message.includes(field), err.message);
    }
  });
});

describe('POST /v1/completions', () => {
  it('non-stream and stream give the same text; chunks are text_completion objects', async () => {
    const request = { prompt: 'Once upon a time', max_tokens: 30, seed: 5 };
    const whole = (await post('/v1/completions', request)).json();
    assert.equal(whole.object, 'text_completion');
    assert.equal(whole.choices[0].index, 0);
    assert.equal(whole.choices[0].logprobs, null);
    assert.equal(whole.usage.prompt_tokens, tokenizer.encode('Once upon a time').length);
    const res = await post('/v1/completions', { ...request, stream: true });
    const { events, done } = parseSse(res.body);
    assert.ok(done);
    for (const e of events) assert.equal(e.object, 'text_completion');
    const text = events.map((e) => e.choices[0].text).join('');
    assert.equal(text, whole.choices[0].text);
    assert.equal(events.at(-1)?.choices[0].finish_reason, whole.choices[0].finish_reason);
  });

  it('defaults to 16 tokens and honours stop', async () => {
    const whole = (
      await post('/v1/completions', { prompt: 'The pipeline', seed: 11, temperature: 0 })
    ).json();
    if (whole.choices[0].finish_reason === 'length') assert.equal(whole.usage.completion_tokens, 16);
    const text = whole.choices[0].text as string;
    const stop = text.slice(5, 8);
    const cut = (
      await post('/v1/completions', { prompt: 'The pipeline', seed: 11, temperature: 0, stop })
    ).json();
    assert.equal(cut.choices[0].text, text.slice(0, text.indexOf(stop)));
    assert.equal(cut.choices[0].finish_reason, 'stop');
  });

  it('rejects an empty prompt and a non-string prompt naming the field', async () => {
    assert.equal(errorOf(await post('/v1/completions', { prompt: '' }), 400).param, 'prompt');
    assert.equal(errorOf(await post('/v1/completions', { prompt: ['a', 1] }), 400).param, 'prompt[1]');
    assert.equal(errorOf(await post('/v1/completions', { prompt: true }), 400).param, 'prompt');
  });
});

describe('transport errors', () => {
  it('unknown routes are 404 in the error shape; a known route with another method is 405 naming the allowed ones', async () => {
    const err = errorOf(await send('/v1/nothing'), 404);
    assert.match(err.message, /\/v1\/nothing/);
    const wrong = await send({ method: 'DELETE', url: '/generate' });
    assert.equal(errorOf(wrong, 405).code, 'method_not_allowed');
    assert.equal(wrong.headers.allow, 'POST');
  });

  it('a body over 256 KiB is 413', async () => {
    const err = errorOf(await post('/v1/completions', { prompt: 'x'.repeat(300 * 1024) }), 413);
    assert.equal(err.code, 'body_too_large');
  });

  it('a non-JSON content type is 415, broken JSON and an empty body are 400', async () => {
    errorOf(
      await post('/generate', 'prompt=hi', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
    );
    errorOf(await post('/generate', 'hi', { 'content-type': 'text/plain' }), 415);
    assert.equal(
      errorOf(await post('/generate', '{"prompt": ', { 'content-type': 'application/json' }), 400).code,
      'invalid_json',
    );
    errorOf(await post('/generate', '', { 'content-type': 'application/json' }), 400);
  });

  it('__proto__ and constructor.prototype keys are refused and pollute nothing', async () => {
    const res = await post('/generate', '{"prompt":"hi","__proto__":{"polluted":true}}', {
      'content-type': 'application/json',
    });
    errorOf(res, 400);
    const res2 = await post('/generate', '{"prompt":"hi","constructor":{"prototype":{"polluted":true}}}', {
      'content-type': 'application/json',
    });
    errorOf(res2, 400);
    assert.equal((await send('/health')).statusCode, 200);
    // Whether a prototype was polluted can only be seen inside the process: the same bodies, in process.
    const app = await appWithoutModel(false);
    try {
      await app.ready();
      for (const payload of [
        '{"prompt":"hi","__proto__":{"polluted":true}}',
        '{"prompt":"hi","constructor":{"prototype":{"polluted":true}}}',
      ]) {
        const inProcess = await app.inject({
          method: 'POST',
          url: '/generate',
          payload,
          headers: { 'content-type': 'application/json' },
        });
        errorOf(inProcess, 400);
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    } finally {
      await app.close();
    }
  });
});

describe('metrics', () => {
  it('exposes request latency by route and counts generated tokens and time to first token', async () => {
    const before = await scrape(server.url);
    const res = (await post('/v1/completions', { prompt: 'Metrics', max_tokens: 7, seed: 2 })).json();
    const text = await scrape(server.url);
    const tokens =
      metricValue(text, 'tiny_llm_generated_tokens_total') -
      metricValue(before, 'tiny_llm_generated_tokens_total');
    assert.equal(tokens, res.usage.completion_tokens);
    const ttft =
      metricValue(text, 'tiny_llm_time_to_first_token_seconds_count') -
      metricValue(before, 'tiny_llm_time_to_first_token_seconds_count');
    assert.equal(ttft, 1);
    assert.ok(metricValue(text, 'tiny_llm_tokens_per_second_count') >= 1);
    assert.ok(
      metricValue(
        text,
        'http_request_duration_seconds_count',
        '{method="POST",route="/v1/completions",status_code="200"}',
      ) >= 1,
    );
    assert.equal(metricValue(text, 'tiny_llm_queue_depth'), 0);
    assert.equal(metricValue(text, 'tiny_llm_in_flight_generations'), 0);
    assert.match(text, /# TYPE tiny_llm_aborted_generations_total counter/);
  });
});

/** The app built in this process without a model (its load fails at once). */
async function appWithoutModel(checkSchemas: boolean) {
  const noModel = Promise.reject(new Error('no model in this test'));
  noModel.catch(() => {});
  return buildApp({ model: noModel, systemPrompt: 'x', workers: 1, logger: false, checkSchemas });
}

describe('route schemas', () => {
  /** Builds the app without a model and makes it ready; resolves with the error, if any. */
  async function readyError(checkSchemas: boolean, extraRoute: boolean): Promise<Error | null> {
    const app = await appWithoutModel(checkSchemas);
    if (extraRoute) app.post('/broken', { schema: { body: { type: 'object', title: 5 } } }, async () => ({}));
    try {
      await app.ready();
      return null;
    } catch (err) {
      return err as Error;
    } finally {
      await app.close().catch(() => {});
    }
  }

  it('are valid JSON Schema: checked here, so a served app may skip the check at start', async () => {
    assert.equal(await readyError(true, false), null);
    // The check is real: an invalid schema fails it, and passes unnoticed without it.
    assert.match(
      String(await readyError(true, true)),
      /schema is invalid|must be equal to one of the allowed values/,
    );
    assert.equal(await readyError(false, true), null);
  });
});
