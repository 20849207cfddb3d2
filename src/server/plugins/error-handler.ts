// Turns every failure into the `{error: {message, type, param, code}}` shape with the right status and the security headers; never a stack trace, never request data echoed unescaped.
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, type ErrorType } from '../errors.js';
import { ContextOverflow } from '../workers/job.js';
import { securityHeaders } from './security.js';
import { shared } from './shared.js';

interface ValidationIssue {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

/** Path parameters longer than this are refused (414) before routing; Fastify's default. */
export const MAX_PARAM_LENGTH = 100;

/** The most characters of a client's text (a path, a field name) an error message repeats. */
const ECHO_LIMIT = 100;

/**
 * Client text as an error message repeats it: cut to ECHO_LIMIT characters, and anything that is not plainly
 * printable shown as an escape, so an answer never carries markup or control characters the client sent.
 */
export function shown(text: string): string {
  const cut = text.length > ECHO_LIMIT ? `${text.slice(0, ECHO_LIMIT)}…` : text;
  return cut.replace(
    /[^\x20-\x7e…]|[<>"'`\\]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** "/messages/0/role" → "messages[0].role"; required/extra properties name the property itself. */
export function fieldName(issue: ValidationIssue): string {
  const parts = issue.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const extra = issue.params.missingProperty ?? issue.params.additionalProperty;
  if (typeof extra === 'string') parts.push(extra);
  let name = '';
  for (const part of parts) name += /^\d+$/.test(part) ? `[${part}]` : name ? `.${part}` : part;
  return name;
}

function validationError(error: FastifyError): ApiError {
  const issue = (error.validation as ValidationIssue[] | undefined)?.[0];
  if (!issue) return new ApiError(400, 'Invalid request.', 'invalid_request_error');
  // Field names can be anything the client wrote (an unknown key): at most ECHO_LIMIT characters come back.
  const field = fieldName(issue).slice(0, ECHO_LIMIT);
  const where =
    error.validationContext === 'body' || !error.validationContext ? '' : `${error.validationContext} `;
  const allowed = Array.isArray(issue.params.allowedValues)
    ? `: ${(issue.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`
    : '';
  const types = issue.params.type;
  const detail =
    issue.keyword === 'type' && types !== undefined
      ? `must be ${(Array.isArray(types) ? types : String(types).split(',')).join(' or ')}`
      : issue.message;
  let message: string;
  if (issue.keyword === 'required') message = `Missing required ${where}field '${field}'.`;
  else if (issue.keyword === 'additionalProperties') message = `Unknown ${where}field '${field}'.`;
  else if (field === '') message = `The request ${where || 'body '}${detail ?? 'is invalid'}.`;
  else message = `Invalid ${where}field '${field}': ${detail ?? 'invalid value'}${allowed}.`;
  return new ApiError(400, message, 'invalid_request_error', field || null, 'invalid_value');
}

/** Maps Fastify's own errors (parsing, limits, routing) to safe client errors; unknown errors become a bare 500. */
export function toApiError(error: FastifyError | Error): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof ContextOverflow) {
    return new ApiError(400, error.message, 'invalid_request_error', null, 'context_length_exceeded');
  }
  const e = error as FastifyError;
  if (e.validation) return validationError(e);
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(
        413,
        'The request body is too large.',
        'invalid_request_error',
        null,
        'body_too_large',
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(
        415,
        'Unsupported Content-Type: send the body as application/json.',
        'invalid_request_error',
        null,
        'unsupported_media_type',
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError(
        400,
        'The request body is empty; send a JSON object.',
        'invalid_request_error',
        null,
        'invalid_json',
      );
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError(
        400,
        'The Content-Length header does not match the body.',
        'invalid_request_error',
        null,
        'invalid_content_length',
      );
    case 'FST_ERR_BAD_URL':
      return new ApiError(
        400,
        "The URL's path does not decode: a '%' is not followed by two hexadecimal digits of UTF-8.",
        'invalid_request_error',
        null,
        'invalid_url',
      );
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new ApiError(
        414,
        `A segment of the URL's path is longer than ${MAX_PARAM_LENGTH} characters.`,
        'invalid_request_error',
        null,
        'uri_too_long',
      );
  }
  if (error instanceof SyntaxError || e.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new ApiError(
      400,
      'The request body is not valid JSON.',
      'invalid_request_error',
      null,
      'invalid_json',
    );
  }
  if (status >= 400 && status < 500) {
    // Fastify's other 4xx say what was wrong with the request in its own words, which may repeat it: the status
    // and code are kept, the words are not.
    const type: ErrorType = status === 404 ? 'not_found_error' : 'invalid_request_error';
    return new ApiError(status, `${STATUS_CODES[status] ?? 'Bad request'}.`, type, null, e.code ?? null);
  }
  return new ApiError(500, 'The server had an internal error.', 'server_error', null, 'internal_error');
}

/**
 * JSON text of an error body with `<`, `>`, `&` and the two JavaScript line separators escaped (`\u003c`…): the
 * same JSON to any parser, but no markup even for a reader that ignores the Content-Type.
 */
export function errorJson(err: ApiError, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ ...err.toBody(), ...extra }).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Answers `err` in the error shape; `extra` adds top-level fields beside `error` (the probes' `status`). */
export function sendError(
  reply: FastifyReply,
  err: ApiError,
  extra: Record<string, unknown> = {},
): FastifyReply {
  // Set here too: some answers never pass the security plugin's onRequest hook (routing errors, hook failures).
  reply.headers(securityHeaders());
  if (err.retryAfter !== null) reply.header('retry-after', String(err.retryAfter));
  return reply.code(err.statusCode).type('application/json; charset=utf-8').send(errorJson(err, extra));
}

/** The headers of an error answered outside Fastify's reply: security headers, JSON, Connection: close. */
export function rawErrorHeaders(
  err: ApiError,
  body: string,
  extraHeaders: Record<string, string> = {},
): Record<string, string> {
  return {
    ...securityHeaders(),
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    connection: 'close',
    ...(err.retryAfter !== null ? { 'retry-after': String(err.retryAfter) } : {}),
    ...extraHeaders,
  };
}

/** A whole HTTP/1.1 answer for a connection Fastify never turned into a request (a parse error, a refused method). */
export function rawErrorResponse(err: ApiError, extraHeaders: Record<string, string> = {}): string {
  const body = errorJson(err);
  let head = `HTTP/1.1 ${err.statusCode} ${STATUS_CODES[err.statusCode] ?? 'Error'}\r\n`;
  for (const [name, value] of Object.entries(rawErrorHeaders(err, body, extraHeaders)))
    head += `${name}: ${value}\r\n`;
  return `${head}\r\n${body}`;
}

/** Whether the request's connection is already gone: nothing can be answered, and it is the client's doing. */
export function connectionGone(request: FastifyRequest, reply: FastifyReply): boolean {
  return reply.raw.destroyed || request.raw.socket?.destroyed === true;
}

/** One registered route: its methods and its path split into segments (`:name` matches any one segment). */
interface RouteShape {
  methods: string[];
  segments: string[];
}

function matches(shape: RouteShape, segments: readonly string[]): boolean {
  const n = shape.segments.length;
  if (shape.segments[n - 1] === '*')
    return (
      segments.length >= n - 1 &&
      shape.segments.slice(0, n - 1).every((s, i) => s.startsWith(':') || s === segments[i])
    );
  if (n !== segments.length) return false;
  for (let i = 0; i < n; i++) {
    const s = shape.segments[i];
    if (s.startsWith(':') ? segments[i] === '' : s !== segments[i]) return false;
  }
  return true;
}

export const errorHandlerPlugin = shared('error-handler', async (app: FastifyInstance) => {
  const routes: RouteShape[] = [];
  app.addHook('onRoute', (route) => {
    routes.push({
      methods: Array.isArray(route.method) ? route.method : [route.method],
      segments: route.url.split('/'),
    });
  });

  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    // The client left (a stream payload reports "Premature close" when its response closes): nothing can be
    // answered and nothing went wrong here; the disconnect is logged, at info, when the response closes.
    if (connectionGone(request, reply)) {
      request.log.debug(`no answer sent: the client left (${error.code ?? error.message})`);
      reply.hijack();
      return;
    }
    const apiError = toApiError(error);
    if (apiError.statusCode >= 500 && !(error instanceof ApiError)) {
      request.log.error({ err: error }, `unhandled error: ${error.message}`);
    }
    return sendError(reply, apiError);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    const segments = path.split('/');
    const allowed = new Set<string>();
    for (const route of routes) if (matches(route, segments)) for (const m of route.methods) allowed.add(m);
    if (allowed.size > 0) {
      const allow = [...allowed].sort().join(', ');
      reply.header('allow', allow);
      return sendError(
        reply,
        new ApiError(
          405,
          `${request.method} is not allowed on ${shown(path)}; it answers ${allow}.`,
          'invalid_request_error',
          null,
          'method_not_allowed',
        ),
      );
    }
    return sendError(
      reply,
      new ApiError(
        404,
        `No route for ${request.method} ${shown(path)}.`,
        'not_found_error',
        null,
        'not_found',
      ),
    );
  });
});

/** Fastify's `frameworkErrors`: a URL that does not decode or a path segment over the limit, answered as any other error. */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  sendError(reply, toApiError(error));
}
