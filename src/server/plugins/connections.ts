// The HTTP connections themselves: answers for what Node refuses before Fastify sees a request, clients that stop reading, and the closing of every connection when the server drains.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { errorJson, rawErrorHeaders, rawErrorResponse } from './error-handler.js';
import { shared } from './shared.js';

/** A connection whose client takes no byte of its answer for this long is closed: the client stopped reading. */
export const SEND_STALL_MS = 15_000;
/**
 * Answer bytes all connections together may hold in this process while their clients do not take them (the
 * kernel's socket buffers are on top); above it the connections holding most are closed.
 */
export const UNSENT_BUDGET_BYTES = 64 * 1024 * 1024;
/** How often connections are checked for stalls and the unsent budget. */
const CHECK_MS = 1000;

export interface ConnectionOptions {
  /** SEND_STALL_MS unless given (tests shorten it). */
  sendStallMs?: number;
  /** UNSENT_BUDGET_BYTES unless given. */
  unsentBudgetBytes?: number;
}

/** What a connection's parse error says, as an answer: status, code and a fixed message (never the bytes sent). */
function clientErrorAnswer(code: string | undefined): ApiError {
  const bad = (message: string, errorCode: string) =>
    new ApiError(400, message, 'invalid_request_error', null, errorCode);
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new ApiError(
        431,
        'The request headers are too large (16 KiB at most, request line included).',
        'invalid_request_error',
        null,
        'headers_too_large',
      );
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new ApiError(
        408,
        'The request did not arrive in time: headers within 10 s, the whole request within 30 s.',
        'invalid_request_error',
        null,
        'request_timeout',
      );
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      return bad(
        'The Content-Length header is not valid: one decimal number, and not together with Transfer-Encoding.',
        'invalid_content_length',
      );
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return bad(
        'The Transfer-Encoding header is not valid: chunked last, and never with Content-Length.',
        'invalid_transfer_encoding',
      );
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_STRICT':
      return bad('The chunked request body is malformed.', 'invalid_chunked_body');
    case 'HPE_INVALID_METHOD':
      return bad('The request method is not a valid HTTP method.', 'invalid_method');
    case 'HPE_INVALID_VERSION':
      return bad('Only HTTP/1.0 and HTTP/1.1 are served here.', 'invalid_http_version');
    case 'HPE_INVALID_URL':
      return bad('The request target is not a valid URL path.', 'invalid_url');
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_LF_EXPECTED':
    case 'HPE_CR_EXPECTED':
      return bad('A request header is malformed.', 'invalid_header');
    case 'HPE_INVALID_EOF_STATE':
      return bad('The connection was closed before the request was complete.', 'incomplete_request');
    default:
      return bad('The request is not valid HTTP/1.1.', 'bad_request');
  }
}

type HttpSocket = Socket & { _httpMessage?: (ServerResponse & { req?: IncomingMessage }) | null };

/**
 * Writes a whole answer on a raw socket and closes it. Answers to requests received in full before the bad bytes
 * (pipelined) go first, in order; a response already under way for the request that broke cannot be followed
 * by a status line, so that connection is only closed.
 */
function answerRaw(socket: HttpSocket, err: ApiError, extraHeaders?: Record<string, string>): void {
  const current = socket._httpMessage;
  if (current && !current.writableFinished && current.req?.complete && !socket.destroyed) {
    current.once('close', () => setImmediate(() => answerRaw(socket, err, extraHeaders)));
    return;
  }
  if (socket.writable && !current?.headersSent) socket.end(rawErrorResponse(err, extraHeaders));
  socket.destroySoon();
}

/**
 * Fastify's `clientErrorHandler`: Node could not read a request (malformed, headers over the limit, too slow).
 * Answered in the error shape with the security headers; a reset connection is only closed. Logged at info:
 * the client's mistake, not the server's.
 */
export function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) {
    socket.destroy();
    return;
  }
  const answer = clientErrorAnswer(err.code);
  this.log.info(
    { remoteIp: socket.remoteAddress, code: err.code },
    `client error: ${answer.statusCode} ${answer.code} (${err.code ?? err.message})`,
  );
  answerRaw(socket, answer);
}

interface Tracked {
  /** Bytes the kernel has taken from this connection, at the last check. */
  taken: number;
  /** When the client last took bytes (or when it last had nothing waiting). */
  since: number;
  /** Bytes of an answer still held outside the socket (a stream's buffer), if any. */
  held: (() => number) | null;
}

/** The connections of an app and what is done to them; see connectionsPlugin. */
export class Connections {
  private readonly open = new Map<Socket, Tracked>();
  private readonly closeReasons = new WeakMap<Socket, string>();
  private timer: NodeJS.Timeout | null = null;
  draining = false;

  constructor(
    private readonly app: FastifyInstance,
    private readonly sendStallMs: number,
    private readonly unsentBudget: number,
  ) {}

  add(socket: Socket): void {
    this.open.set(socket, { taken: 0, since: performance.now(), held: null });
    socket.once('close', () => this.open.delete(socket));
    if (!this.timer) {
      this.timer = setInterval(() => this.check(), CHECK_MS);
      this.timer.unref();
    }
  }

  get count(): number {
    return this.open.size;
  }

  /** Counts `held()` bytes (an answer waiting outside the socket, e.g. a stream's buffer) as this connection's unsent bytes. */
  holdsUnsent(socket: Socket | null | undefined, held: () => number): void {
    const t = socket ? this.open.get(socket) : undefined;
    if (t) t.held = held;
  }

  /** Why the server closed this connection, if it did (for the disconnect log line). */
  reasonFor(socket: Socket | null | undefined): string | undefined {
    return socket ? this.closeReasons.get(socket) : undefined;
  }

  /** Closes a connection, remembering why. */
  cut(socket: Socket, reason: string): void {
    if (!this.closeReasons.has(socket)) this.closeReasons.set(socket, reason);
    socket.destroy();
  }

  /**
   * Closes connections whose client took no byte for sendStallMs while bytes waited for it, then, while all
   * connections together hold more unsent bytes than the budget, the ones holding most.
   */
  check(now = performance.now()): void {
    let total = 0;
    const holders: Array<[Socket, number]> = [];
    for (const [socket, t] of this.open) {
      // Bytes written minus those still in the socket's buffer: what the kernel took, so far.
      const taken = socket.bytesWritten - socket.writableLength;
      const unsent = socket.writableLength + (t.held?.() ?? 0);
      if (unsent === 0 || taken > t.taken) t.since = now;
      t.taken = taken;
      if (unsent > 0 && now - t.since >= this.sendStallMs) {
        this.app.log.info(
          { remoteIp: socket.remoteAddress, unsentBytes: unsent },
          `closing a connection: its client took nothing for ${Math.round((now - t.since) / 1000)} s (${unsent} bytes waiting)`,
        );
        this.cut(
          socket,
          `the client stopped reading (${unsent} bytes waited ${Math.round((now - t.since) / 1000)} s)`,
        );
        continue;
      }
      total += unsent;
      if (unsent > 0) holders.push([socket, unsent]);
    }
    if (total <= this.unsentBudget) return;
    holders.sort((a, b) => b[1] - a[1]);
    for (const [socket, unsent] of holders) {
      if (total <= this.unsentBudget) break;
      this.app.log.warn(
        { remoteIp: socket.remoteAddress, unsentBytes: unsent },
        `closing a connection: ${total} bytes unsent in all, over the ${this.unsentBudget}-byte budget`,
      );
      this.cut(socket, `the server's unsent bytes were over budget (${unsent} on this connection)`);
      total -= unsent;
    }
  }

  /**
   * Start of a drain: every later answer closes its connection. Idle keep-alive connections stay open until the
   * generations are done: a client may be sending on one right now (a probe, a proxy reusing it), and closing it
   * under that request would fail it where an answer (503 for a generation, Connection: close) can still be given.
   */
  beginDrain(): void {
    this.draining = true;
  }

  /** Closes connections with no request under way (the close phase calls it until the last one is gone). */
  closeIdle(): void {
    this.app.server.closeIdleConnections();
  }

  /** The drain deadline: every connection still open is closed, whatever it was doing; resolves the count. */
  closeAll(): number {
    const n = this.open.size;
    for (const socket of this.open.keys())
      if (!this.closeReasons.has(socket)) this.closeReasons.set(socket, 'closed at the drain deadline');
    this.app.server.closeAllConnections();
    // Connections Node's list does not hold (upgraded or never parsed) go the same way.
    for (const socket of this.open.keys()) socket.destroy();
    return n;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    connections: Connections;
  }
}

/** Answers a request Node holds back from Fastify, on its own response object, and closes the connection. */
function answerResponse(res: ServerResponse, err: ApiError): void {
  const body = errorJson(err);
  res.writeHead(err.statusCode, rawErrorHeaders(err, body));
  res.end(body);
}

/** Node's own answers, in the error shape: a refused `Expect` (417) and a CONNECT request (405). */
function nodeLevelAnswers(app: FastifyInstance): void {
  app.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    app.log.info({ remoteIp: req.socket.remoteAddress }, 'client error: 417 expectation_failed');
    answerResponse(
      res,
      new ApiError(
        417,
        "The Expect header is not supported here (only '100-continue').",
        'invalid_request_error',
        null,
        'expectation_failed',
      ),
    );
  });
  // Without a listener Node drops a CONNECT request's connection without a word.
  app.server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    app.log.info({ remoteIp: socket.remoteAddress }, 'client error: 405 method_not_allowed (CONNECT)');
    answerRaw(
      socket,
      new ApiError(
        405,
        'CONNECT is not allowed: this is not a proxy.',
        'invalid_request_error',
        null,
        'method_not_allowed',
      ),
      { allow: 'GET, HEAD, POST' },
    );
  });
}

export const connectionsPlugin = shared<ConnectionOptions>(
  'connections',
  async (app: FastifyInstance, options) => {
    const connections = new Connections(
      app,
      options.sendStallMs ?? SEND_STALL_MS,
      options.unsentBudgetBytes ?? UNSENT_BUDGET_BYTES,
    );
    app.decorate('connections', connections);
    app.server.on('connection', (socket: Socket) => connections.add(socket));
    nodeLevelAnswers(app);
    // While draining, every answer closes its connection: a client's next request goes to another instance.
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (connections.draining) reply.header('connection', 'close');
      done(null, payload);
    });
    app.addHook('onClose', (_app, done) => {
      connections.stop();
      done();
    });
  },
);
