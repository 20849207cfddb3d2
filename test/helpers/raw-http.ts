// Raw-socket HTTP/1.1 for tests that play a hostile client: bytes sent as written, answers parsed by hand (several on one connection, pipelined), and sockets held open half-way.
import { connect, type Socket } from 'node:net';

export interface RawAnswer {
  status: number;
  /** Header names in lower case; a repeated header's values joined with ", ". */
  headers: Record<string, string>;
  body: string;
}

export interface RawExchange {
  /** Every whole answer read, in order. */
  answers: RawAnswer[];
  /** Everything the server sent (latin1). */
  raw: string;
  /** How the exchange ended: the server closed the connection, the answers asked for came, or the wait ran out. */
  ended: 'closed' | 'answered' | 'timeout';
  /** ms from the first byte sent to the end. */
  ms: number;
}

/** Splits what a server sent into answers (Content-Length or chunked bodies; interim 1xx skipped); a cut last answer is left out. */
export function parseAnswers(raw: string): RawAnswer[] {
  const answers: RawAnswer[] = [];
  let at = 0;
  while (at < raw.length) {
    const headEnd = raw.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const [statusLine, ...lines] = raw.slice(at, headEnd).split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? NaN);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    let bodyStart = headEnd + 4;
    // An interim answer (100 Continue) has no body and is not the answer.
    if (status >= 100 && status < 200) {
      at = bodyStart;
      continue;
    }
    let body = '';
    if (headers['transfer-encoding']?.includes('chunked')) {
      for (;;) {
        const sizeEnd = raw.indexOf('\r\n', bodyStart);
        if (sizeEnd < 0) return answers;
        const size = Number.parseInt(raw.slice(bodyStart, sizeEnd), 16);
        if (Number.isNaN(size) || raw.length < sizeEnd + 2 + size + 2) return answers;
        body += raw.slice(sizeEnd + 2, sizeEnd + 2 + size);
        bodyStart = sizeEnd + 2 + size + 2;
        if (size === 0) break;
      }
      at = bodyStart;
    } else {
      const length = Number(headers['content-length'] ?? 0);
      if (raw.length < bodyStart + length) return answers;
      body = raw.slice(bodyStart, bodyStart + length);
      at = bodyStart + length;
    }
    answers.push({ status, headers, body: Buffer.from(body, 'latin1').toString('utf8') });
  }
  return answers;
}

/** Opens a connection and resolves once it is up. */
export function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * Sends `bytes` on a fresh connection and reads until the server closes it, `answers` whole answers have come
 * (if given), or `waitMs` passes; then the socket is destroyed. Never rejects: a reset connection ends the
 * exchange like a close.
 */
export async function exchange(
  port: number,
  bytes: string | Buffer,
  waitMs = 5000,
  answers?: number,
): Promise<RawExchange> {
  const socket = await openSocket(port);
  const started = performance.now();
  let raw = '';
  socket.on('data', (d: Buffer) => {
    raw += d.toString('latin1');
  });
  socket.on('error', () => {});
  const ended = await new Promise<'closed' | 'timeout' | 'answered'>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), waitMs);
    if (answers !== undefined)
      socket.on('data', () => {
        if (parseAnswers(raw).length >= answers) {
          clearTimeout(timer);
          resolve('answered');
        }
      });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    socket.write(bytes);
  });
  socket.destroy();
  return { answers: parseAnswers(raw), raw, ended, ms: performance.now() - started };
}

/** Resolves when the socket closes (true), or false after `ms`. */
export function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** A JSON POST as raw bytes, with a correct Content-Length unless `contentLength` says otherwise. */
export function jsonPost(path: string, body: string, extraHeaders = '', contentLength?: string): string {
  const length = contentLength ?? String(Buffer.byteLength(body));
  return `POST ${path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n${extraHeaders}\r\n${body}`;
}
