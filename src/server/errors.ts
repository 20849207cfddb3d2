// API errors in OpenAI's shape ({error: {message, type, param, code}}) and the status each one maps to.

export type ErrorType = 'invalid_request_error' | 'rate_limit_error' | 'server_error' | 'not_found_error';

export interface ErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

/** An error whose message is safe to show to the client; anything else becomes a generic 500. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly statusCode: number,
    message: string,
    readonly type: ErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Seconds for the Retry-After header (503 and 429). */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }

  toBody(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export function badRequest(
  message: string,
  param: string | null = null,
  code: string | null = null,
): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

/** 503 with Retry-After: the server cannot take the request now but will soon. */
export function unavailable(message: string, code: string, retryAfter = 1): ApiError {
  return new ApiError(503, message, 'server_error', null, code, retryAfter);
}

/** The 400 for prompt + completion tokens beyond the context, naming every count. */
export function contextLengthExceeded(
  promptTokens: number,
  maxTokens: number,
  context: number,
  promptParam: string,
  maxParam: string,
): ApiError {
  return badRequest(
    `This model's maximum context length is ${context} tokens, but ${promptTokens + maxTokens} were requested ` +
      `(${promptTokens} in the prompt + ${maxTokens} for the completion). Shorten ${promptParam} or lower ${maxParam}.`,
    maxTokens > 0 ? maxParam : promptParam,
    'context_length_exceeded',
  );
}
