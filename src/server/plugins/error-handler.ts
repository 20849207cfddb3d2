// Turns every failure into the `{error: {message, type, param, code}}` shape with the right status; never a stack trace.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, type ErrorType } from '../errors.js';
import { ContextOverflow } from '../workers/job.js';
import { shared } from './shared.js';

interface ValidationIssue {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
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
  const field = fieldName(issue);
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

/** Maps Fastify's own errors (parsing, limits) to safe client errors; unknown errors become a bare 500. */
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
      return new ApiError(400, 'The Content-Length header does not match the body.', 'invalid_request_error');
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
    // Fastify's 4xx messages describe the request, not the server; they are safe to show.
    const type: ErrorType = status === 404 ? 'not_found_error' : 'invalid_request_error';
    return new ApiError(status, e.message || 'Bad request.', type, null, e.code ?? null);
  }
  return new ApiError(500, 'The server had an internal error.', 'server_error', null, 'internal_error');
}

export function sendError(reply: FastifyReply, err: ApiError): FastifyReply {
  if (err.retryAfter !== null) reply.header('retry-after', String(err.retryAfter));
  return reply.code(err.statusCode).type('application/json; charset=utf-8').send(err.toBody());
}

export const errorHandlerPlugin = shared('error-handler', async (app: FastifyInstance) => {
  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const apiError = toApiError(error);
    if (apiError.statusCode >= 500 && !(error instanceof ApiError)) {
      request.log.error({ err: error }, `unhandled error: ${error.message}`);
    }
    return sendError(reply, apiError);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(
      reply,
      new ApiError(
        404,
        `No route for ${request.method} ${request.url.split('?')[0]}.`,
        'not_found_error',
        null,
        'not_found',
      ),
    ),
  );
});
