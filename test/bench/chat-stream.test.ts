// Proves the bench's streamed-chat reader finds the first content delta and [DONE] however the text is chunked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChatStreamTimer, hasContent } from '../../bench/lib/chat-stream.js';

const event = (delta: object, finish: string | null = null) =>
  `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

const stream = [
  event({ role: 'assistant', content: '' }),
  event({ content: 'Hi' }),
  event({ content: ' there' }),
  event({}, 'length'),
  `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } })}\n\n`,
  'data: [DONE]\n\n',
].join('');
const firstContentEnds = stream.indexOf('Hi') + stream.slice(stream.indexOf('Hi')).indexOf('\n\n') + 2;

test('hasContent is true only for a chunk with non-empty delta.content', () => {
  assert.equal(
    hasContent(JSON.stringify({ choices: [{ delta: { role: 'assistant', content: '' } }] })),
    false,
  );
  assert.equal(hasContent(JSON.stringify({ choices: [{ delta: { content: 'x' } }] })), true);
  assert.equal(hasContent(JSON.stringify({ choices: [] })), false);
  assert.equal(hasContent('[DONE]'), false);
  assert.throws(() => hasContent('{oops'), /not JSON/);
});

test('the first content time is the arrival of the chunk that completes the first content event, for every split', () => {
  for (let a = 1; a < stream.length; a += 7)
    for (let b = a; b < stream.length; b += 13) {
      const timer = new ChatStreamTimer();
      const parts = [stream.slice(0, a), stream.slice(a, b), stream.slice(b)];
      for (const [i, p] of parts.entries()) timer.push(p, i);
      const expected = firstContentEnds <= a ? 0 : firstContentEnds <= b ? 1 : 2;
      assert.equal(timer.firstContentAt, expected, `split at ${a}, ${b}`);
      assert.equal(timer.done, true, `split at ${a}, ${b}`);
    }
});

test('a stream cut off before [DONE] is not done, and one without content has no first-content time', () => {
  const timer = new ChatStreamTimer();
  timer.push(event({ role: 'assistant', content: '' }) + event({}, 'stop'), 5);
  assert.equal(timer.firstContentAt, null);
  assert.equal(timer.done, false);
});
