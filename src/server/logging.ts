// JSON logs in the shape Cloud Logging reads: severity, message, httpRequest and the trace of the request.
import type { IncomingMessage } from 'node:http';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import { LogController } from 'fastify';
import { type DestinationStream, type Logger, pino } from 'pino';

/** pino level label → Cloud Logging severity. */
const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

export interface LoggerOptions {
  level?: string;
  /** Where lines go (stdout by default); tests pass a stream to read them back. */
  destination?: DestinationStream;
}

/** A pino logger whose lines carry `severity`, `message` and an RFC 3339 `time`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      messageKey: 'message',
      errorKey: 'error',
      timestamp: pino.stdTimeFunctions.isoTime,
      base: undefined,
      formatters: {
        level: (label) => ({ severity: SEVERITY[label] ?? 'DEFAULT' }),
      },
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}

/**
 * `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1` → `projects/<project>/traces/TRACE_ID`, the field that
 * groups a request's log lines under its trace. Null without a project or a well-formed header.
 */
export function traceField(
  header: string | string[] | undefined,
  project: string | undefined,
): string | null {
  if (!project || typeof header !== 'string') return null;
  const traceId = header.split('/')[0];
  if (!/^[0-9a-fA-F]{1,64}$/.test(traceId)) return null;
  return `projects/${project}/traces/${traceId}`;
}

/** Child loggers per request carry the trace field. */
export function traceChildLoggerFactory(project: string | undefined) {
  return function childLoggerFactory(
    this: unknown,
    logger: FastifyBaseLogger,
    bindings: Record<string, unknown>,
    opts: object,
    rawReq: IncomingMessage,
  ): FastifyBaseLogger {
    const trace = traceField(rawReq.headers['x-cloud-trace-context'], project);
    if (trace) bindings['logging.googleapis.com/trace'] = trace;
    return logger.child(bindings, opts);
  };
}

/** The `httpRequest` object Cloud Logging reads, for a request's log line. */
function httpRequestField(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  remoteIp = request.ip,
) {
  return {
    requestMethod: request.method,
    requestUrl: request.url,
    status,
    latency: `${(reply.elapsedTime / 1000).toFixed(6)}s`,
    userAgent: request.headers['user-agent'],
    remoteIp,
  };
}

/** Where a request stood when its connection closed before the response was complete. */
export type DisconnectPhase = 'receiving the request' | 'before the response headers' | 'mid-response';

/**
 * The status a disconnect is logged with: nginx's 499 ("client closed request"). No such answer is sent; it keeps
 * these lines apart from the server's own errors in a log query.
 */
export const DISCONNECT_STATUS = 499;

/**
 * One info line for a request whose connection closed before its answer was complete, saying why and when.
 * `remoteIp` is the client's address as read while the connection was open.
 */
export function logDisconnect(
  request: FastifyRequest,
  reply: FastifyReply,
  reason: string,
  remoteIp: string,
): void {
  const phase: DisconnectPhase = !request.raw.complete
    ? 'receiving the request'
    : reply.raw.headersSent
      ? 'mid-response'
      : 'before the response headers';
  request.log.info(
    {
      httpRequest: httpRequestField(request, reply, DISCONNECT_STATUS, remoteIp),
      disconnect: { reason, phase },
    },
    `${request.method} ${request.url}: connection closed ${phase} after ${reply.elapsedTime.toFixed(0)} ms: ${reason}`,
  );
}

/** One line per request with Cloud Logging's `httpRequest` object; probes and metrics scrapes log at debug. */
export class CloudLogController extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    // A response cut by a closed connection has its own line (logDisconnect), at info: not a server error.
    if (reply.raw.destroyed && !reply.raw.writableFinished) return;
    const status = reply.statusCode;
    const quiet = request.url === '/health' || request.url === '/ready' || request.url === '/metrics';
    // Probes and scrapes stay at debug (a /ready 503 while loading or draining is expected); 503s are warnings.
    const level: 'debug' | 'error' | 'warn' | 'info' =
      quiet && !error
        ? 'debug'
        : error || (status >= 500 && status !== 503)
          ? 'error'
          : status === 503 || status === 429
            ? 'warn'
            : 'info';
    // The line is built only when it will be written (a pino logger says; Fastify's no-op logger has no level).
    const log = request.log as FastifyBaseLogger & { isLevelEnabled?(level: string): boolean };
    if (log.isLevelEnabled && !log.isLevelEnabled(level)) return;
    log[level](
      { httpRequest: httpRequestField(request, reply, status) },
      `${request.method} ${request.url} ${status}`,
    );
  }

  /** A streamed answer that ended early: a closed connection is the client's doing (logDisconnect says so). */
  override streamError(
    error: Error & { code?: string },
    _request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (error.code === 'ERR_STREAM_PREMATURE_CLOSE') reply.log.debug('stream closed before its end');
    else reply.log.warn(`a streamed answer ended with an error after its headers: ${error.message}`);
  }
}
