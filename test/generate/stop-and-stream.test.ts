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
