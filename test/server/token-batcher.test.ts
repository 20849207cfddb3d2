// TokenBatcher: a streamed job's texts go out at once until the first text has, then at most once per flush interval, and nothing is lost.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type TokenBatch, TokenBatcher } from '../../src/server/workers/token-batcher.js';

/** Feeds (text, time) steps, one token each, and returns what would be posted, ending with a flush at `endAt`. */
function run(batcher: TokenBatcher, steps: Array<[string, number]>, endAt: number): TokenBatch[] {
  const out: TokenBatch[] = [];
  steps.forEach(([text, now], i) => {
    const batch = batcher.add(text, i + 1, now);
    if (batch) out.push(batch);
  });
  const last = batcher.flush(endAt);
  if (last) out.push(last);
  return out;
}

describe('TokenBatcher', () => {
  it('posts every step until one with text is out (time to first token), then coalesces by time', () => {
    const steps: Array<[string, number]> = [
      ['', 0.0], // held back by the generator (a stop sequence may be forming): still posted
      ['Hel', 0.1], // the first text: posted at once
      ['lo', 0.2],
      [',', 3],
      [' wor', 9.9],
      ['ld', 10.1], // 10 ms after the last post
      ['!', 12],
      ['', 15],
    ];
    const out = run(new TokenBatcher(10), steps, 16);
    assert.deepEqual(out, [
      { text: '', tokens: 1 },
      { text: 'Hel', tokens: 2 },
      { text: 'lo, world', tokens: 6 },
      { text: '!', tokens: 8 },
    ]);
  });

  it('loses no text and no token count for any timing (200 random streams)', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let maxMessages = 0;
    for (let s = 0; s < 200; s++) {
      const steps: Array<[string, number]> = [];
      let now = 0;
      const n = 1 + Math.floor(random() * 60);
      for (let i = 0; i < n; i++) {
        now += random() * 3;
        steps.push([random() < 0.2 ? '' : String.fromCharCode(97 + (i % 26)), now]);
      }
      const out = run(new TokenBatcher(10), steps, now);
      assert.equal(out.map((b) => b.text).join(''), steps.map(([t]) => t).join(''));
      assert.equal(out.at(-1)?.tokens, n, 'the last message brings the count to every token');
      for (let i = 1; i < out.length; i++) assert.ok(out[i].tokens > out[i - 1].tokens);
      // After the first text: at most one message per 10 ms, plus the end.
      const firstText = steps.findIndex(([t]) => t !== '');
      const afterFirst = firstText < 0 ? 0 : out.length - (firstText + 1);
      const span = firstText < 0 ? 0 : now - steps[firstText][1];
      assert.ok(afterFirst <= Math.floor(span / 10) + 1, `${afterFirst} messages in ${span.toFixed(1)} ms`);
      maxMessages = Math.max(maxMessages, out.length);
    }
    console.log(`largest number of messages for one stream: ${maxMessages} (steps up to 60)`);
  });

  it('has nothing to flush when everything was posted', () => {
    const b = new TokenBatcher(10);
    assert.deepEqual(b.add('a', 1, 0), { text: 'a', tokens: 1 });
    assert.equal(b.flush(1), null);
  });
});
