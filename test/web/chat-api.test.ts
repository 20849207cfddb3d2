// Proves the page's streaming client: deltas in order across any chunking, stop keeps the partial reply,
// and every HTTP/network failure becomes the sentence the user sees.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type ChatRequest,
  CONNECTION_LOST,
  describeHttpError,
  type FetchLike,
  NETWORK_ERROR,
  retryAfterSeconds,
  streamChat,
} from '../../web/src/chat-api.js';

const request: ChatRequest = {
  messages: [{ role: 'user', content: 'hi' }],
  max_tokens: 8,
  temperature: 1,
  top_k: 50,
  top_p: 0.95,
};

const sse = (obj: unknown) => `data: ${JSON.stringify(obj)}\n\n`;
const delta = (content: string) =>
  sse({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] });

/** A fetch that answers with these byte chunks, pulled one at a time, and records the request. */
function fakeFetch(chunks: Uint8Array[], init: ResponseInit = { status: 200 }) {
  const seen: { url: string; body: unknown }[] = [];
  const impl: FetchLike = async (url, req) => {
    seen.push({ url, body: JSON.parse(String(req.body)) });
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (i < chunks.length) controller.enqueue(chunks[i++]);
        else controller.close();
      },
    });
    return new Response(body, init);
  };
  return { impl, seen };
}

test('streams deltas in order, even with a UTF-8 character split across chunks, and reports usage', async () => {
  const text = [
    sse({ choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] }),
    delta(' Hel'),
    delta('lo é'),
    delta('🙂!'),
    sse({ choices: [{ index: 0, delta: {}, finish_reason: 'length' }] }),
    sse({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 } }),
    'data: [DONE]\n\n',
  ].join('');
  const bytes = new TextEncoder().encode(text);
  // Cut every 3 bytes so multi-byte characters and event boundaries fall mid-chunk.
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += 3) chunks.push(bytes.slice(i, i + 3));
  const { impl, seen } = fakeFetch(chunks);
  const pieces: string[] = [];
  const outcome = await streamChat(request, new AbortController().signal, (t) => pieces.push(t), impl);
  assert.deepEqual(pieces, [' Hel', 'lo é', '🙂!']);
  assert.deepEqual(outcome, {
    kind: 'done',
    finishReason: 'length',
    usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 },
  });
  assert.equal(seen[0].url, '/v1/chat/completions');
  const body = seen[0].body as Record<string, unknown>;
  assert.equal(body.stream, true);
  assert.deepEqual(body.messages, request.messages);
  assert.equal('seed' in body, false, 'no seed field when the seed is random');
});

test('stop (abort) mid-stream resolves as stopped after the deltas already shown', async () => {
  const controller = new AbortController();
  const impl: FetchLike = async (_url, req) => {
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(delta('partial')));
        req.signal?.addEventListener('abort', () => c.error(new DOMException('aborted', 'AbortError')));
      },
    });
    return new Response(body, { status: 200 });
  };
  const pieces: string[] = [];
  const pending = streamChat(
    request,
    controller.signal,
    (t) => {
      pieces.push(t);
      controller.abort();
    },
    impl,
  );
  assert.deepEqual(await pending, { kind: 'stopped' });
  assert.deepEqual(pieces, ['partial']);
});

test('a stream that closes without a finish is reported as cut off; with a finish it is complete', async () => {
  const enc = new TextEncoder();
  const cut = fakeFetch([enc.encode(delta('a'))]);
  assert.deepEqual(await streamChat(request, new AbortController().signal, () => {}, cut.impl), {
    kind: 'error',
    message: CONNECTION_LOST,
  });
  const finished = fakeFetch([
    enc.encode(delta('a') + sse({ choices: [{ delta: {}, finish_reason: 'stop' }] })),
  ]);
  const outcome = await streamChat(request, new AbortController().signal, () => {}, finished.impl);
  assert.deepEqual(outcome, { kind: 'done', finishReason: 'stop', usage: null });
});

test('an error event mid-stream shows the server message', async () => {
  const { impl } = fakeFetch([
    new TextEncoder().encode(sse({ error: { message: 'worker crashed', type: 'server_error' } })),
  ]);
  const outcome = await streamChat(request, new AbortController().signal, () => {}, impl);
  assert.deepEqual(outcome, { kind: 'error', message: 'worker crashed' });
});

test('HTTP errors become plain sentences: 503 and 429 with the wait, 400 with the server message', async () => {
  const err = (message: string, type: string) =>
    JSON.stringify({ error: { message, type, param: null, code: null } });
  const busy = fakeFetch([new TextEncoder().encode(err('queue full', 'server_error'))], {
    status: 503,
    headers: { 'retry-after': '7' },
  });
  const outcome = await streamChat(request, new AbortController().signal, () => {}, busy.impl);
  assert.deepEqual(outcome, {
    kind: 'error',
    message: 'The server is busy right now. Please try again in 7 seconds.',
  });

  assert.match(
    describeHttpError(429, '2', err('slow down', 'rate_limit_error')),
    /too quickly.*in 2 seconds/,
  );
  assert.match(describeHttpError(429, null, ''), /in a moment/);
  const tooLong = 'This model context is 128 tokens; the prompt has 100 and max_tokens asks for 50.';
  assert.equal(
    describeHttpError(400, null, err(tooLong, 'invalid_request_error')),
    `The server could not use that request: ${tooLong}`,
  );
  assert.equal(
    describeHttpError(500, null, '<html>oops</html>'),
    'The server answered with an error (HTTP 500).',
  );
  assert.match(describeHttpError(413, null, ''), /too long/);
});

test('an API key entered on the page goes out as a bearer token; a 401 says whether one is missing or refused', async () => {
  const headersSeen: Record<string, string>[] = [];
  const refusing: FetchLike = async (_url, init) => {
    headersSeen.push({ ...(init.headers as Record<string, string>) });
    return new Response(
      JSON.stringify({ error: { message: 'Incorrect API key provided.', code: 'invalid_api_key' } }),
      {
        status: 401,
      },
    );
  };
  const withoutKey = await streamChat(request, new AbortController().signal, () => {}, refusing);
  assert.deepEqual(withoutKey, {
    kind: 'error',
    message: 'This server needs an API key. Enter it under Settings → API key.',
  });
  assert.equal(headersSeen[0].authorization, undefined);
  const withKey = await streamChat(request, new AbortController().signal, () => {}, refusing, '  sk-test  ');
  assert.deepEqual(withKey, {
    kind: 'error',
    message: 'The server did not accept that API key. Check it under Settings → API key.',
  });
  assert.equal(headersSeen[1].authorization, 'Bearer sk-test');
});

test('a failed fetch is a network error, unless the user stopped it', async () => {
  const failing: FetchLike = async () => {
    throw new TypeError('Failed to fetch');
  };
  assert.deepEqual(await streamChat(request, new AbortController().signal, () => {}, failing), {
    kind: 'error',
    message: NETWORK_ERROR,
  });
  const stopped = new AbortController();
  stopped.abort();
  assert.deepEqual(await streamChat(request, stopped.signal, () => {}, failing), { kind: 'stopped' });
});

test('Retry-After as seconds or an HTTP date', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(retryAfterSeconds('12', now), 12);
  assert.equal(retryAfterSeconds('Thu, 01 Jan 2026 00:00:30 GMT', now), 30);
  assert.equal(retryAfterSeconds('soon', now), null);
  assert.equal(retryAfterSeconds(null, now), null);
});
