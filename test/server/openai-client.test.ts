// The official `openai` npm client, changed only in baseURL, against the built server (`bin/tiny-llm.js serve`) on 127.0.0.1.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';

let server: BuiltServer;
let client: OpenAI;

before(async () => {
  server = await startBuiltServer();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(() => server.close());

describe('openai client', () => {
  it('models.list returns tiny-llm', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ['tiny-llm']);
  });

  it('chat.completions.create: non-stream and stream agree for a seed, usage reported', async () => {
    const params = {
      model: 'tiny-llm',
      messages: [{ role: 'user' as const, content: 'Hello!' }],
      max_tokens: 24,
      seed: 77,
      temperature: 0.8,
    };
    const whole = await client.chat.completions.create(params);
    assert.equal(whole.object, 'chat.completion');
    assert.equal(whole.choices[0].message.role, 'assistant');
    const content = whole.choices[0].message.content ?? '';
    assert.ok(whole.usage && whole.usage.completion_tokens > 0);

    const stream = await client.chat.completions.create({
      ...params,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      text += choice.delta.content ?? '';
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    console.log(`openai client: ${chunks} chunks, stream text identical: ${text === content}`);
    assert.equal(text, content);
    assert.equal(finish, whole.choices[0].finish_reason);
    assert.deepEqual(usage, whole.usage);
  });

  it('completions.create works, streamed and not', async () => {
    const params = { model: 'tiny-llm', prompt: 'The build', max_tokens: 10, seed: 5 };
    const whole = await client.completions.create(params);
    assert.equal(whole.object, 'text_completion');
    let text = '';
    for await (const chunk of await client.completions.create({ ...params, stream: true }))
      text += chunk.choices[0]?.text ?? '';
    assert.equal(text, whole.choices[0].text);
  });

  it('a 400 surfaces as OpenAI.BadRequestError with the server message and param', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model: 'tiny-llm',
        messages: [{ role: 'user', content: 'x' }],
        temperature: 5,
      }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, String(err));
        assert.equal(err.status, 400);
        assert.equal(err.param, 'temperature');
        assert.match(err.message, /temperature/);
        return true;
      },
    );
    await assert.rejects(
      client.chat.completions.create({
        model: 'tiny-llm',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 5000,
      }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && err.code === 'context_length_exceeded',
    );
  });
});
