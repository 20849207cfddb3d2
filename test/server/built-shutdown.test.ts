// SIGTERM against the built server (`bin/tiny-llm.js serve`) while clients hold connections in every state a raw socket can leave them in — headers or a body half sent, nothing sent, idle keep-alive, a request arriving with the signal, a stream nobody reads: the process always exits 0 within the 8 s drain.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { closedWithin, jsonPost, openSocket, parseAnswers } from '../helpers/raw-http.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

/** The drain the README promises: signal to exit. */
const DRAIN_MS = 8000;

let model: TinyModel;
before(async () => {
  model = await createTinyModel({ nPositions: 1024 });
});
after(() => model.remove());

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** ms from SIGTERM to the exit. */
  ms: number;
}

/** SIGTERM, then the exit (SIGKILL after 15 s, which the assertions then report). */
async function terminate(server: BuiltServer): Promise<Exit> {
  const signalled = performance.now();
  server.child.kill('SIGTERM');
  const kill = setTimeout(() => server.child.kill('SIGKILL'), 15_000);
  const { code, signal } = await server.exited;
  clearTimeout(kill);
  return { code, signal, ms: performance.now() - signalled };
}

function assertCleanExit(exit: Exit, server: BuiltServer, what: string): void {
  console.log(`${what}: exit ${exit.code ?? exit.signal} ${exit.ms.toFixed(0)} ms after SIGTERM`);
  assert.equal(
    exit.code,
    0,
    `${what}: ended by ${exit.signal ?? `code ${exit.code}`}\n${server.output().slice(-1500)}`,
  );
  assert.ok(exit.ms < DRAIN_MS, `${what}: exit ${exit.ms.toFixed(0)} ms after SIGTERM`);
}

/** Writes `chunk` every `everyMs` until the socket closes. */
function trickle(socket: Socket, chunk: string, everyMs: number): void {
  const timer = setInterval(() => {
    if (socket.destroyed || !socket.writable) clearInterval(timer);
    else socket.write(chunk);
  }, everyMs);
  socket.once('close', () => clearInterval(timer));
}

/** A connection that has been answered once and is now idle (keep-alive), with what it reads from then on. */
async function idleKeepAlive(port: number): Promise<{ socket: Socket; read: () => string }> {
  const socket = await openSocket(port);
  socket.on('error', () => {});
  let raw = '';
  socket.on('data', (d: Buffer) => {
    raw += d.toString('latin1');
  });
  socket.write('GET /health HTTP/1.1\r\nHost: test\r\n\r\n');
  while (parseAnswers(raw).length < 1) await new Promise((r) => setTimeout(r, 5));
  const seen = raw.length;
  return { socket, read: () => raw.slice(seen) };
}

describe('SIGTERM with connections in every state (built server)', () => {
  async function server(): Promise<BuiltServer> {
    return startBuiltServer({ workers: 1, modelDir: model.dir });
  }

  it('a client sending its headers a line at a time: the process exits 0 within the drain, the connection is closed', async () => {
    const s = await server();
    const socket = await openSocket(s.port);
    socket.on('error', () => {});
    socket.write('POST /generate HTTP/1.1\r\nHost: test\r\n');
    trickle(socket, 'X-Slow: 1\r\n', 100);
    await new Promise((r) => setTimeout(r, 300));
    const exit = await terminate(s);
    assertCleanExit(exit, s, 'headers trickling');
    assert.ok(await closedWithin(socket, 1000), 'the half-sent request still holds its connection');
  });

  it('a client sending its body a byte at a time: exit 0 within the drain', async () => {
    const s = await server();
    const socket = await openSocket(s.port);
    socket.on('error', () => {});
    socket.write(jsonPost('/generate', '{', '', '4000'));
    trickle(socket, ' ', 100);
    await new Promise((r) => setTimeout(r, 300));
    assertCleanExit(await terminate(s), s, 'body trickling');
    assert.ok(await closedWithin(socket, 1000));
  });

  it('connections that never send a byte: exit 0 within the drain', async () => {
    const s = await server();
    const sockets = await Promise.all([0, 1, 2].map(() => openSocket(s.port)));
    for (const socket of sockets) socket.on('error', () => {});
    await new Promise((r) => setTimeout(r, 200));
    assertCleanExit(await terminate(s), s, 'silent connections');
    for (const socket of sockets) assert.ok(await closedWithin(socket, 1000));
  });

  it('idle keep-alive connections are closed as the drain starts; exit 0 within the drain', async () => {
    const s = await server();
    const idle = await Promise.all([0, 1, 2].map(() => idleKeepAlive(s.port)));
    const signalled = performance.now();
    const exited = terminate(s);
    const closes = await Promise.all(idle.map(({ socket }) => closedWithin(socket, DRAIN_MS)));
    const closedAfter = performance.now() - signalled;
    assertCleanExit(await exited, s, 'idle keep-alive');
    console.log(`3 idle keep-alive connections closed ${closedAfter.toFixed(0)} ms after SIGTERM`);
    assert.deepEqual(closes, [true, true, true]);
    for (const { read } of idle) assert.equal(read(), '', 'nothing is written on an idle connection');
  });

  it('requests arriving with the signal on keep-alive connections: each gets a whole answer or a clean close, and the answered connections close; exit 0 within the drain', async () => {
    const s = await server();
    const offsets = [-30, -5, 0, 5, 30];
    const conns = await Promise.all(offsets.map(() => idleKeepAlive(s.port)));
    // A generation of about a second already running on another keep-alive connection when the signal comes: its
    // answer is written while draining, so it says Connection: close.
    const running = await idleKeepAlive(s.port);
    running.socket.write(
      jsonPost('/generate', JSON.stringify({ prompt: 'run', max_new_tokens: 1000, seed: 1 })),
    );
    await new Promise((r) => setTimeout(r, 50));
    const start = performance.now() + 40;
    const sends = offsets.map(
      (offset, i) =>
        new Promise<void>((resolve) => {
          setTimeout(
            () => {
              const socket = conns[i].socket;
              if (socket.writable)
                socket.write(jsonPost('/generate', JSON.stringify({ prompt: 'late', max_new_tokens: 5 })));
              resolve();
            },
            Math.max(0, start + offset - performance.now()),
          );
        }),
    );
    await new Promise((r) => setTimeout(r, Math.max(0, start - performance.now())));
    const exit = await terminate(s);
    await Promise.all(sends);
    assertCleanExit(exit, s, 'requests with the signal');
    const outcomes: string[] = [];
    for (const [i, { socket, read }] of conns.entries()) {
      assert.ok(await closedWithin(socket, 1000), `connection ${offsets[i]} ms is still open`);
      const answers = parseAnswers(read());
      if (answers.length === 0) {
        // The request raced the close of an idle connection: closed without a byte, as keep-alive allows.
        assert.equal(read(), '', `a partial answer: ${read().slice(0, 200)}`);
        outcomes.push(`${offsets[i]} ms: closed`);
        continue;
      }
      assert.equal(answers.length, 1);
      const [answer] = answers;
      outcomes.push(`${offsets[i]} ms: ${answer.status}`);
      if (answer.status !== 200) {
        assert.equal(answer.status, 503, answer.body);
        assert.equal(JSON.parse(answer.body).error.code, 'shutting_down');
        assert.equal(
          answer.headers.connection,
          'close',
          'an answer given while draining closes its connection',
        );
      }
      // A 200 may have been written before the server took the signal, and so say keep-alive; its connection
      // was then closed by the drain all the same (checked above).
    }
    const ran = parseAnswers(running.read());
    assert.equal(ran.length, 1, 'the running generation was answered');
    assert.equal(ran[0].status, 200, ran[0].body);
    assert.equal(ran[0].headers.connection, 'close');
    assert.ok(await closedWithin(running.socket, 1000));
    console.log(`requests around the signal: ${outcomes.join(', ')}; the running one: ${ran[0].status}`);
  });

  it('a stream whose client never reads: exit 0 within the drain', async () => {
    const s = await server();
    const socket = await openSocket(s.port);
    socket.on('error', () => {});
    socket.pause();
    socket.write(
      jsonPost(
        '/v1/chat/completions',
        JSON.stringify({
          messages: [{ role: 'user', content: 'never read' }],
          stream: true,
          max_tokens: 900,
          n: 4,
          logprobs: true,
          top_logprobs: 20,
        }),
      ),
    );
    await new Promise((r) => setTimeout(r, 500));
    assertCleanExit(await terminate(s), s, 'unread stream');
  });
});
