// The connections plugin's policy for clients that do not read, on stand-in sockets with a stated clock: a connection whose client takes no byte for the stall time is closed (a slow reader that keeps taking is not), a stream's held buffer counts, and over the unsent budget the connections holding most are closed first. The built-server side is in test/reliability/hostile-clients.test.ts.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Connections } from '../../src/server/plugins/connections.js';

/** A socket as the policy reads it: bytes written so far, bytes still in its buffer. */
class FakeSocket extends EventEmitter {
  bytesWritten = 0;
  writableLength = 0;
  destroyed = false;
  remoteAddress = '192.0.2.1';
  destroy(): this {
    this.destroyed = true;
    this.emit('close');
    return this;
  }
  /** The app writes `n` bytes; the kernel takes `taken` of what is waiting. */
  step(n: number, taken: number): void {
    this.bytesWritten += n;
    this.writableLength += n - taken;
  }
}

function setup(stallMs: number, budget: number) {
  const logged: string[] = [];
  const app = {
    log: {
      info: (_o: unknown, m: string) => logged.push(`info ${m}`),
      warn: (_o: unknown, m: string) => logged.push(`warn ${m}`),
    },
    server: { closeIdleConnections() {}, closeAllConnections() {} },
  } as unknown as FastifyInstance;
  const connections = new Connections(app, stallMs, budget);
  const add = () => {
    const s = new FakeSocket();
    connections.add(s as unknown as Socket);
    return s;
  };
  return { connections, add, logged };
}

describe('connections: clients that do not read', () => {
  it('a client that takes nothing for the stall time is closed, with the reason kept for the log', () => {
    const { connections, add, logged } = setup(15_000, 64 * 2 ** 20);
    try {
      const s = add();
      s.step(5000, 1000);
      connections.check(0);
      connections.check(14_999);
      assert.equal(s.destroyed, false, 'closed before the stall time');
      connections.check(15_000);
      assert.equal(s.destroyed, true);
      assert.match(
        connections.reasonFor(s as unknown as Socket) ?? '',
        /client stopped reading \(4000 bytes/,
      );
      assert.match(logged[0], /^info closing a connection: its client took nothing for 15 s/);
    } finally {
      connections.stop();
    }
  });

  it('a slow reader that keeps taking bytes is never closed, however long bytes wait; an idle one neither', () => {
    const { connections, add } = setup(15_000, 64 * 2 ** 20);
    try {
      const slow = add();
      const idle = add();
      for (let t = 0; t <= 120_000; t += 1000) {
        // 10 KB written and 2 KB taken a second: the backlog grows, but the client is reading.
        slow.step(10_000, 2000);
        connections.check(t);
      }
      console.log(`slow reader after 120 s: ${slow.writableLength} bytes waiting, still open`);
      assert.equal(slow.destroyed, false);
      assert.equal(idle.destroyed, false);
    } finally {
      connections.stop();
    }
  });

  it("a stream's held buffer counts as unsent: it stalls and it spends the budget", () => {
    const { connections, add } = setup(15_000, 1000);
    try {
      const s = add();
      s.step(100, 100);
      let held = 500;
      connections.holdsUnsent(s as unknown as Socket, () => held);
      connections.check(0);
      assert.equal(s.destroyed, false, '500 held bytes are within a 1000-byte budget');
      held = 2000;
      connections.check(1000);
      assert.equal(s.destroyed, true, 'over the budget');
      assert.match(
        connections.reasonFor(s as unknown as Socket) ?? '',
        /over budget \(2000 on this connection\)/,
      );
    } finally {
      connections.stop();
    }
  });

  it('over the budget the connections holding most are closed first, until the rest fits', () => {
    const MiB = 2 ** 20;
    const { connections, add, logged } = setup(15_000, 40 * MiB);
    try {
      const [a, b, c] = [add(), add(), add()];
      a.step(30 * MiB, 0);
      b.step(20 * MiB, 0);
      c.step(10 * MiB, 0);
      connections.check(0);
      assert.deepEqual(
        [a.destroyed, b.destroyed, c.destroyed],
        [true, false, false],
        '60 MiB over a 40 MiB budget: closing the 30 MiB one leaves 30 MiB',
      );
      assert.equal(logged.filter((l) => l.startsWith('warn')).length, 1);
      assert.equal(connections.count, 2);
    } finally {
      connections.stop();
    }
  });
});
