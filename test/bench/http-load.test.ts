// Proves the bench's lean load client reads replies however they are split and counts what a real server sent.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { ReplyReader, requestBytes, runLoad } from '../../bench/lib/http-load.js';

const replies = [
  'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 15\r\n\r\n{"response":""}',
  'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n',
  'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\nretry-after: 2\r\n\r\n{}',
  'HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n',
  'HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n',
];
const statuses = [200, 200, 503, 204, 200, 429];

test('the reply reader finds every reply and its status, for every split of the byte stream into two or three parts', () => {
  const bytes = Buffer.from(replies.join(''), 'latin1');
  let checked = 0;
  for (let a = 0; a <= bytes.length; a++) {
    for (const b of [a, Math.min(bytes.length, a + 1), Math.min(bytes.length, a + 37), bytes.length]) {
      const reader = new ReplyReader();
      const seen = [
        ...reader.push(bytes.subarray(0, a)),
        ...reader.push(bytes.subarray(a, b)),
        ...reader.push(bytes.subarray(b)),
      ];
      assert.deepEqual(seen, statuses, `split at ${a} and ${b}`);
      assert.equal(reader.idle, true);
      checked++;
    }
  }
  // One byte at a time: each reply completes on its own last byte, and not before.
  const reader = new ReplyReader();
  const ends: number[] = [];
  for (let i = 0; i < bytes.length; i++) if (reader.push(bytes.subarray(i, i + 1)).length) ends.push(i + 1);
  let offset = 0;
  assert.deepEqual(
    ends,
    replies.map((r) => (offset += r.length)),
  );
  console.log(`# ${checked} splits of ${bytes.length} bytes`);
});

test('the reply reader refuses what it cannot frame instead of miscounting', () => {
  assert.throws(() => new ReplyReader().push(Buffer.from('SSH-2.0-x\r\n\r\n')), /status line/);
  assert.throws(
    () => new ReplyReader().push(Buffer.from('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nbody')),
    /neither Content-Length nor chunked/,
  );
  assert.throws(
    () => new ReplyReader().push(Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n')),
    /chunk size/,
  );
});

test('the request is the method, path, headers and body as given, with its Content-Length', () => {
  const bytes = requestBytes({
    url: 'http://127.0.0.1:8000',
    method: 'POST',
    path: '/generate',
    headers: { 'content-type': 'application/json' },
    body: '{"prompt":"é"}',
    connections: 1,
    durationMs: 1,
  }).toString('utf8');
  assert.equal(
    bytes,
    'POST /generate HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"prompt":"é"}',
  );
});

test('a load run against a real server counts its 2xx and other replies and a latency for each 2xx', async () => {
  let served = 0;
  let refused = 0;
  const bodies = new Set<string>();
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      body += d;
    });
    req.on('end', () => {
      bodies.add(`${req.method} ${req.url} ${req.headers['content-type']} ${body}`);
      const n = ++served;
      // Every fifth a 503, every other one chunked (no Content-Length), after a short wait.
      setTimeout(() => {
        if (n % 5 === 0) {
          refused++;
          res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{}}');
        } else if (n % 2 === 0) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write('{"response":');
          res.end('"ok"}');
        } else res.writeHead(200, { 'content-length': '2' }).end('{}');
      }, 2);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const result = await runLoad({
      url: `http://127.0.0.1:${port}`,
      method: 'POST',
      path: '/generate',
      headers: { 'content-type': 'application/json' },
      body: '{"prompt":"hi"}',
      connections: 4,
      durationMs: 400,
    });
    console.log(
      `# served ${served} (${refused} refused); counted ${result.ok} ok, ${result.non2xx} other, ${result.errors} errors`,
    );
    assert.deepEqual([...bodies], ['POST /generate application/json {"prompt":"hi"}']);
    assert.equal(result.errors, 0);
    assert.ok(result.ok > 20, `only ${result.ok} replies in 400 ms`);
    // Replies still in flight when the time was up (at most one per connection) are not counted.
    const counted = result.ok + result.non2xx;
    assert.ok(counted <= served && counted >= served - 4, `counted ${counted} of ${served}`);
    assert.ok(result.non2xx >= refused - 4 && result.non2xx <= refused, `${result.non2xx} vs ${refused}`);
    assert.equal(result.latenciesMs.length, result.ok);
    // Each reply waits ~2 ms in the server; its timer counts from the event loop's cached clock, which can lag
    // the request's arrival on a busy machine, so single replies may take less: the median shows the wait.
    const sorted = [...result.latenciesMs].sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1];
    console.log(
      `# latency min ${sorted[0].toFixed(2)} ms, median ${median.toFixed(2)}, max ${sorted.at(-1)?.toFixed(2)}`,
    );
    assert.ok(sorted[0] > 0 && (sorted.at(-1) ?? 0) < 400, 'a latency out of range');
    assert.ok(median >= 1.5, `median latency ${median} ms, below the server's 2 ms wait`);
    assert.ok(result.elapsedS >= 0.39 && result.elapsedS < 1);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
