// Clients that leave, read back from the built server's log (`bin/tiny-llm.js serve`): every request gets exactly one line, a disconnect is an INFO line saying when (receiving the request, before the response headers, mid-response) and why — never an ERROR with a stack ("unhandled error: Premature close").
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { jsonPost, openSocket } from '../helpers/raw-http.js';

interface LogLine {
  severity: string;
  message: string;
  httpRequest?: { requestUrl: string; status: number; remoteIp?: string };
  disconnect?: { reason: string; phase: string };
  err?: unknown;
}

/** Sends `bytes`, then closes the connection after `leaveMs` (or on the first bytes back, when `onFirstByte`). */
async function leave(port: number, bytes: string, leaveMs: number, onFirstByte = false): Promise<void> {
  const socket = await openSocket(port);
  socket.on('error', () => {});
  await new Promise<void>((resolve) => {
    const go = () => {
      socket.destroy();
      resolve();
    };
    if (onFirstByte) socket.once('data', go);
    else setTimeout(go, leaveMs);
    socket.write(bytes);
  });
}

const stream = (maxTokens: number) =>
  jsonPost(
    '/v1/chat/completions',
    JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: maxTokens }),
  );
const whole = (maxTokens: number) =>
  jsonPost('/generate', JSON.stringify({ prompt: 'hi', max_new_tokens: maxTokens }));

describe('client disconnects in the built server’s log', () => {
  let server: BuiltServer;
  before(async () => {
    server = await startBuiltServer({ workers: 1 }, { nPositions: 1024 });
  });
  after(() => server.close());

  it('every request gets one line; disconnects are INFO with phase and reason; nothing at WARNING or above', async () => {
    const mark = server.output().length;
    let sent = 0;
    // Leaving within the first milliseconds: between acceptance and the response headers, where a stream's
    // payload once reported "Premature close" to the error handler.
    for (let ms = 0; ms < 12; ms++) {
      await leave(server.port, stream(200), ms);
      await leave(server.port, whole(200), ms);
      sent += 2;
    }
    // Mid-stream: gone on the first bytes of a long stream.
    for (let i = 0; i < 4; i++) await leave(server.port, stream(900), 0, true);
    sent += 4;
    // Queued behind a long generation, then gone.
    const busy = leave(server.port, whole(900), 1500);
    await new Promise((r) => setTimeout(r, 100));
    await Promise.all([leave(server.port, stream(50), 100), leave(server.port, whole(50), 100)]);
    await busy;
    sent += 3;
    // Half the body sent, then gone.
    await leave(server.port, jsonPost('/generate', '{"prompt": "h', '', '100'), 100);
    sent += 1;
    await new Promise((r) => setTimeout(r, 500));

    const lines: LogLine[] = server
      .output()
      .slice(mark)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
    const requests = lines.filter((l) => l.httpRequest);
    const gone = requests.filter((l) => l.disconnect);
    const phases = new Map<string, number>();
    for (const l of gone) phases.set(l.disconnect!.phase, (phases.get(l.disconnect!.phase) ?? 0) + 1);
    console.log(
      `${sent} requests: ${requests.length} request lines, ${gone.length} disconnects (${[...phases].map(([p, n]) => `${p}: ${n}`).join(', ')})`,
    );
    console.log(`example: ${JSON.stringify(gone[0])}`);
    const loud = lines.filter((l) => !['INFO', 'DEBUG'].includes(l.severity));
    assert.deepEqual(loud, [], 'a disconnect was logged above INFO');
    assert.doesNotMatch(server.output().slice(mark), /Premature close|unhandled error/);
    assert.equal(requests.length, sent, 'each request has exactly one line');
    for (const l of gone) {
      assert.equal(l.severity, 'INFO');
      assert.equal(l.httpRequest!.status, 499);
      assert.equal(l.httpRequest!.remoteIp, '127.0.0.1');
      assert.equal(l.disconnect!.reason, 'the client closed the connection');
      assert.match(
        l.message,
        /connection closed (receiving the request|before the response headers|mid-response) after \d+ ms/,
      );
    }
    assert.ok((phases.get('before the response headers') ?? 0) >= 3, 'leaving before the headers was seen');
    assert.ok((phases.get('mid-response') ?? 0) >= 4, 'leaving mid-stream was seen');
    assert.equal(phases.get('receiving the request'), 1, 'leaving mid-body was seen');
    // The server is none the worse.
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
  });
});
