// Real clients, unchanged but for their base URL and key, against what ships (`bin/tiny-llm.js serve` over dist/,
// started with an API key): LangChain's ChatOpenAI, the Vercel AI SDK's OpenAI-compatible provider, the openai SDK.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI } from '@langchain/openai';
import { generateText, streamText } from 'ai';
import OpenAI from 'openai';
import { type BuiltServer, builtServerAvailable, startBuiltServer } from '../helpers/api-server-process.js';

const KEY = 'test-key-9f2c';
let server: BuiltServer;

describe('real clients against the built server', {
  skip: builtServerAvailable ? false : 'needs `npm run build`',
}, () => {
  before(async () => {
    server = await startBuiltServer(['--api-key', 'other-key', '--api-key', KEY]);
  });
  after(async () => {
    assert.equal(await server.stop(), 0, 'the server drains and exits 0');
  });

  describe('LangChain ChatOpenAI', () => {
    const chat = (extra: Partial<ConstructorParameters<typeof ChatOpenAI>[0]> = {}) =>
      new ChatOpenAI({
        model: 'tiny-llm',
        apiKey: KEY,
        configuration: { baseURL: `${server.url}/v1` },
        maxRetries: 0,
        maxTokens: 16,
        temperature: 0.8,
        ...extra,
      });

    it('invoke answers an AIMessage with token usage; stream gives the same text for a seed', async () => {
      const llm = chat({ modelKwargs: { seed: 21 } });
      const message = await llm.invoke([
        ['system', 'You are terse.'],
        ['human', 'What does the pipeline do?'],
      ]);
      assert.equal(typeof message.content, 'string');
      assert.ok(message.usage_metadata && message.usage_metadata.output_tokens > 0, JSON.stringify(message));
      let streamed = '';
      let chunks = 0;
      for await (const chunk of await llm.stream([
        ['system', 'You are terse.'],
        ['human', 'What does the pipeline do?'],
      ])) {
        streamed += String(chunk.content);
        chunks++;
      }
      console.log(`LangChain: ${chunks} chunks, stream = invoke: ${streamed === message.content}`);
      assert.equal(streamed, message.content);
    });

    it('logprobs: response_metadata carries the tokens and their top alternatives', async () => {
      const message = await chat({ logprobs: true, topLogprobs: 3, modelKwargs: { seed: 3 } }).invoke('Hi');
      const content = (message.response_metadata.logprobs as { content: Array<Record<string, unknown>> })
        .content;
      assert.ok(content.length > 0);
      for (const entry of content) {
        assert.ok(typeof entry.logprob === 'number' && entry.logprob <= 0);
        assert.equal((entry.top_logprobs as unknown[]).length, 3);
      }
    });

    it('a wrong key surfaces as an authentication error', async () => {
      await assert.rejects(chat({ apiKey: 'wrong' }).invoke('Hi'), /401|invalid_api_key|Incorrect API key/);
    });
  });

  describe('Vercel AI SDK (@ai-sdk/openai-compatible)', () => {
    const provider = () =>
      createOpenAICompatible({
        name: 'tiny-llm',
        baseURL: `${server.url}/v1`,
        apiKey: KEY,
        includeUsage: true,
      });

    it('generateText and streamText answer the same text for a seed, with usage', async () => {
      const model = provider().chatModel('tiny-llm');
      const request = {
        model,
        system: 'You are terse.',
        prompt: 'What gets scanned?',
        maxOutputTokens: 16,
        seed: 8,
        temperature: 0.7,
        maxRetries: 0,
      };
      const whole = await generateText(request);
      assert.equal(typeof whole.text, 'string');
      assert.ok((whole.usage.outputTokens ?? 0) > 0, JSON.stringify(whole.usage));
      assert.ok(['stop', 'length'].includes(whole.finishReason), whole.finishReason);
      const stream = streamText(request);
      let text = '';
      for await (const piece of stream.textStream) text += piece;
      assert.equal(text, whole.text);
      assert.deepEqual((await stream.usage).outputTokens, whole.usage.outputTokens);
    });

    it('the completion model works too, and penalties pass through', async () => {
      const result = await generateText({
        model: provider().completionModel('tiny-llm'),
        prompt: 'The build',
        maxOutputTokens: 8,
        frequencyPenalty: 0.5,
        presencePenalty: 0.5,
        seed: 2,
        maxRetries: 0,
      });
      assert.equal(typeof result.text, 'string');
      assert.equal(result.usage.outputTokens, 8, JSON.stringify(result.usage));
    });
  });

  describe('openai SDK', () => {
    it('chat logprobs and completions echo scoring through the official client', async () => {
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
      const chat = await client.chat.completions.create({
        model: 'tiny-llm',
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 6,
        logprobs: true,
        top_logprobs: 2,
        n: 2,
        seed: 4,
      });
      assert.equal(chat.choices.length, 2);
      assert.ok((chat.choices[0].logprobs?.content?.length ?? 0) > 0);
      const scored = await client.completions.create({
        model: 'tiny-llm',
        prompt: 'Score this line.',
        echo: true,
        max_tokens: 0,
        logprobs: 5,
      });
      assert.equal(scored.choices[0].text, 'Score this line.');
      assert.equal(scored.choices[0].logprobs?.token_logprobs?.[0], null);
      await assert.rejects(
        new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'nope', maxRetries: 0 }).models.list(),
        (err: unknown) => err instanceof OpenAI.AuthenticationError && err.code === 'invalid_api_key',
      );
    });
  });
});
