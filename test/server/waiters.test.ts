// Proves the pool's waiter helper: wait() resolves at once when the condition holds, otherwise at the first check()
// that finds it holding, and never on a check() that finds it false.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Waiters } from '../../src/server/workers/waiters.js';

describe('Waiters', () => {
  it('resolves waiters only once the condition holds, all of them, and forgets them then', async () => {
    let value = 0;
    const waiters = new Waiters(() => value >= 2);
    const woken: number[] = [];
    const first = waiters.wait().then(() => woken.push(1));
    const second = waiters.wait().then(() => woken.push(2));
    assert.equal(waiters.count, 2);
    value = 1;
    waiters.check();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(woken, [], 'woken while the condition was false');
    value = 2;
    waiters.check();
    await Promise.all([first, second]);
    assert.deepEqual(woken, [1, 2]);
    assert.equal(waiters.count, 0);
    // Already holding: no check() needed.
    await waiters.wait();
  });
});
