// Proves the SSE parser yields the same events however the byte stream is chunked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SseParser } from '../../web/src/sse.js';

function parseAll(chunks: string[]): string[] {
  const parser = new SseParser();
  const out = chunks.flatMap((c) => parser.push(c));
  return [...out, ...parser.end()];
}

test('data lines, [DONE], comments and other fields', () => {
  const stream = ': keep-alive\n\ndata: {"a":1}\n\nevent: x\nid: 3\ndata: [DONE]\n\n';
  assert.deepEqual(parseAll([stream]), ['{"a":1}', '[DONE]']);
});

test('multi-line data joins with newlines; no space after the colon is fine; CRLF and CR line ends', () => {
  assert.deepEqual(parseAll(['data:one\r\ndata: two\r\n\r\n']), ['one\ntwo']);
  assert.deepEqual(parseAll(['data: a\r\rdata: b\n\n']), ['a', 'b']);
});

test('an event without its closing blank line is not emitted', () => {
  assert.deepEqual(parseAll(['data: x\n\ndata: cut']), ['x']);
});

test('any chunking of a stream yields the same events as one chunk', () => {
  const payload = fc.stringMatching(/^[^\r\n]*$/);
  const newline = fc.constantFrom('\n', '\r\n', '\r');
  fc.assert(
    fc.property(
      fc.array(fc.tuple(payload, newline), { maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (events, cuts) => {
        const text = events.map(([data, nl]) => `data: ${data}${nl}${nl}`).join('');
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const chunks: string[] = [];
        let last = 0;
        for (const p of points) {
          chunks.push(text.slice(last, p));
          last = p;
        }
        chunks.push(text.slice(last));
        assert.deepEqual(parseAll(chunks), parseAll([text]));
        assert.deepEqual(
          parseAll([text]),
          events.map(([data]) => data),
        );
      },
    ),
    { numRuns: 300 },
  );
});
