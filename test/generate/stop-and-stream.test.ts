// Proves stop sequences cut text exactly once and streamed deltas never split a UTF-8 character.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { StopMatcher } from '../../src/generate/stop.js';
import { TokenTextStream } from '../../src/generate/text-stream.js';

describe('StopMatcher', () => {
  it('holds back a possible stop prefix and cuts at the stop sequence', () => {
    const m = new StopMatcher(['\nUser:']);
    assert.equal(m.push('Hello'), 'Hello');
    assert.equal(m.push(' there\nUs'), ' there');
    assert.equal(m.push('er: next'), '');
    assert.equal(m.done, true);
    assert.equal(m.push('more'), '');
  });

  it('releases held text when the prefix does not complete', () => {
    const m = new StopMatcher(['\nUser:']);
    assert.equal(m.push('a\nU'), 'a');
    assert.equal(m.push('nder'), '\nUnder');
    assert.equal(m.flush(), '');
  });

  it('for any split of any text, the emitted text is the text up to the first stop', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.constantFrom('ab', '\nUser:', 'x'),
        (text, cuts, stop) => {
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
          const m = new StopMatcher([stop]);
          let out = '';
          let last = 0;
          for (const p of [...points, text.length]) {
            out += m.push(text.slice(last, p));
            last = p;
          }
          out += m.flush();
          const at = text.indexOf(stop);
          assert.equal(out, at >= 0 ? text.slice(0, at) : text);
        },
      ),
      { numRuns: 500 },
    );
  });
});

/** The reference cut: the first end position where a stop completes; of those ending there, the longest. */
function referenceCut(text: string, stops: string[]): string {
  for (let end = 1; end <= text.length; end++) {
    let longest = 0;
    for (const s of stops)
      if (s.length <= end && text.slice(end - s.length, end) === s) longest = Math.max(longest, s.length);
    if (longest > 0) return text.slice(0, end - longest);
  }
  return text;
}

describe('StopMatcher with several stops', () => {
  it('cuts where the first stop completes, whatever the split (longest stop when several end together)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\n'), maxLength: 40 }),
        fc.array(fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\n'), minLength: 1, maxLength: 5 }), {
          minLength: 1,
          maxLength: 5,
        }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (text, stops, cuts) => {
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
          const m = new StopMatcher(stops);
          let out = '';
          let last = 0;
          for (const p of [...points, text.length]) {
            out += m.push(text.slice(last, p));
            last = p;
          }
          out += m.flush();
          assert.equal(out, referenceCut(text, stops));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('holds back only what can still become a stop, across stops', () => {
    const m = new StopMatcher(['abcd', 'cx']);
    assert.equal(m.push('zzabc'), 'zz', '"abc" may become "abcd", "c" may become "cx"');
    assert.equal(m.push('q'), 'abcq');
    assert.equal(m.push('abcd'), '');
    assert.equal(m.done, true);
  });

  it('repeated stop-string prefixes: nothing is lost and the held text never exceeds the longest stop', () => {
    // 16 stops of 256 characters sharing their first 255, against 64 KiB of text that keeps matching them.
    const stops = Array.from({ length: 16 }, (_, i) => `${'a'.repeat(255)}${String.fromCharCode(98 + i)}`);
    const m = new StopMatcher(stops);
    let pushed = 0;
    let released = 0;
    while (pushed < 64 * 1024) {
      released += m.push('aaaaaaa').length;
      pushed += 7;
      assert.ok(pushed - released <= 255, `held ${pushed - released} characters`);
    }
    assert.equal(released + m.flush().length, pushed);
  });
});

describe('TokenTextStream', () => {
  it('never releases half of a multi-byte character', () => {
    const bytes = new TextEncoder().encode('é🙂ok');
    // One "token" per byte, the worst case for splitting.
    const stream = new TokenTextStream({ tokenBytes: (id) => bytes.subarray(id, id + 1) });
    const deltas: string[] = [];
    for (let i = 0; i < bytes.length; i++) deltas.push(stream.push(i));
    deltas.push(stream.flush());
    assert.equal(deltas.join(''), 'é🙂ok');
    for (const d of deltas)
      assert.ok(!d.includes('\uFFFD'), `delta ${JSON.stringify(d)} holds a broken character`);
    assert.deepEqual(
      deltas.filter((d) => d),
      ['é', '🙂', 'o', 'k'],
    );
  });

  it('an incomplete tail becomes U+FFFD at flush', () => {
    const stream = new TokenTextStream({ tokenBytes: () => Uint8Array.of(0xe2, 0x82) });
    assert.equal(stream.push(0), '');
    assert.equal(stream.flush(), '\uFFFD');
  });
});
