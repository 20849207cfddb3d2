// A lean HTTP/1.1 load client for the server bench: keep-alive connections each sending one request after another.
import { connect, type Socket } from 'node:net';
import { nowMs } from './stats.js';

export interface LoadOptions {
  /** http://host:port (plain HTTP, loopback). */
  url: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Connections, each with one request in flight at a time. */
  connections: number;
  /** How long requests are sent; replies still in flight at the end are not counted. */
  durationMs: number;
  /** A reply slower than this counts as a timeout and its connection is replaced. */
  timeoutMs?: number;
}

export interface LoadResult {
  /** Replies with a 2xx status completed within the duration. */
  ok: number;
  /** Replies with another status. */
  non2xx: number;
  /** Connection errors, malformed replies and timeouts. */
  errors: number;
  /** Whole-reply latency of each 2xx reply (ms, from writing the request to the last body byte). */
  latenciesMs: number[];
  /** Seconds from the first request to the end of the window. */
  elapsedS: number;
}

const CRLF2 = Buffer.from('\r\n\r\n');

/** The request bytes, built once and written as they are for every request. */
export function requestBytes(options: LoadOptions): Buffer {
  const { host } = new URL(options.url);
  const body = options.body === undefined ? Buffer.alloc(0) : Buffer.from(options.body);
  let head = `${options.method} ${options.path} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const [name, value] of Object.entries(options.headers ?? {})) head += `${name}: ${value}\r\n`;
  if (body.length > 0 || options.method !== 'GET') head += `content-length: ${body.length}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`), body]);
}

/**
 * Reads HTTP/1.1 replies from a byte stream: status line, headers, then a Content-Length or chunked body.
 * `push` returns the status of every reply that the bytes completed. Throws on a malformed reply.
 */
export class ReplyReader {
  private buffer: Buffer = Buffer.alloc(0);
  /** Body bytes still expected for the current reply (-1: reading headers; -2: reading chunks). */
  private remaining = -1;
  private status = 0;

  push(data: Buffer): number[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, data]) : data;
    const done: number[] = [];
    for (;;) {
      if (this.remaining === -1) {
        const end = this.buffer.indexOf(CRLF2);
        if (end < 0) {
          if (this.buffer.length > 64 * 1024) throw new Error('reply headers exceed 64 KiB');
          return done;
        }
        this.readHead(this.buffer.toString('latin1', 0, end));
        this.buffer = this.buffer.subarray(end + 4);
      }
      if (this.remaining === -2) {
        if (!this.readChunks()) return done;
      } else if (this.remaining > 0) {
        if (this.buffer.length < this.remaining) {
          this.remaining -= this.buffer.length;
          this.buffer = Buffer.alloc(0);
          return done;
        }
        this.buffer = this.buffer.subarray(this.remaining);
      }
      done.push(this.status);
      this.remaining = -1;
      if (this.buffer.length === 0) return done;
    }
  }

  /** True while no reply is partly read. */
  get idle(): boolean {
    return this.remaining === -1 && this.buffer.length === 0;
  }

  private readHead(head: string): void {
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(head);
    if (!match) throw new Error(`not an HTTP/1.1 status line: ${JSON.stringify(head.slice(0, 40))}`);
    this.status = Number(match[1]);
    const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
    if (/\r\ntransfer-encoding:[ \t]*chunked/i.test(head)) this.remaining = -2;
    else if (length) this.remaining = Number(length[1]);
    else if (this.status === 204 || this.status === 304) this.remaining = 0;
    else throw new Error('a reply with neither Content-Length nor chunked encoding');
  }

  /** Consumes whole chunks; true once the last chunk and its trailer are read. */
  private readChunks(): boolean {
    for (;;) {
      const lineEnd = this.buffer.indexOf('\r\n');
      if (lineEnd < 0) return false;
      const size = Number.parseInt(this.buffer.toString('latin1', 0, lineEnd), 16);
      if (!Number.isFinite(size) || size < 0) throw new Error('a malformed chunk size');
      if (size === 0) {
        const trailerEnd = this.buffer.indexOf(CRLF2, lineEnd);
        if (trailerEnd === lineEnd) {
          this.buffer = this.buffer.subarray(lineEnd + 4);
          return true;
        }
        if (trailerEnd < 0) return false;
        this.buffer = this.buffer.subarray(trailerEnd + 4);
        return true;
      }
      if (this.buffer.length < lineEnd + 2 + size + 2) return false;
      this.buffer = this.buffer.subarray(lineEnd + 2 + size + 2);
    }
  }
}

/** Runs the load: every connection sends the same request again as soon as the previous reply has ended. */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const request = requestBytes(options);
  const { hostname, port } = new URL(options.url);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const result: LoadResult = { ok: 0, non2xx: 0, errors: 0, latenciesMs: [], elapsedS: 0 };
  const start = nowMs();
  const deadline = start + options.durationMs;
  const sockets = new Set<Socket>();
  let closing = false;

  return new Promise((resolve) => {
    const open = () => {
      if (closing) return;
      const reader = new ReplyReader();
      let sentAt = 0;
      const socket = connect({ host: hostname, port: Number(port), noDelay: true });
      sockets.add(socket);
      const send = () => {
        if (nowMs() >= deadline) return;
        sentAt = nowMs();
        socket.write(request);
      };
      const fail = () => {
        if (closing || !sockets.delete(socket)) return;
        result.errors++;
        socket.destroy();
        setImmediate(open);
      };
      socket.setTimeout(timeoutMs, fail);
      socket.on('connect', send);
      socket.on('error', fail);
      socket.on('close', fail);
      socket.on('data', (data: Buffer) => {
        let statuses: number[];
        try {
          statuses = reader.push(data);
        } catch {
          fail();
          return;
        }
        if (statuses.length === 0) return;
        const at = nowMs();
        if (at > deadline) return;
        for (const status of statuses) {
          if (status >= 200 && status < 300) {
            result.ok++;
            result.latenciesMs.push(at - sentAt);
          } else result.non2xx++;
        }
        send();
      });
    };
    for (let i = 0; i < options.connections; i++) open();
    setTimeout(() => {
      closing = true;
      result.elapsedS = (nowMs() - start) / 1000;
      for (const socket of sockets) socket.destroy();
      resolve(result);
    }, options.durationMs);
  });
}
