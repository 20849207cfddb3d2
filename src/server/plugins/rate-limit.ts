// Per-client rate limit (keyed on the client IP that Cloud Run's front end reports) answering 429 in OpenAI's shape.
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import type { RateLimitOptions } from '../defaults.js';
import { ApiError } from '../errors.js';
import { shared } from './shared.js';

export { DEFAULT_RATE_LIMIT, type RateLimitOptions } from '../defaults.js';

export const rateLimitPlugin = shared<RateLimitOptions>(
  'rate-limit',
  async (app: FastifyInstance, options) => {
    await app.register(rateLimit, {
      global: true,
      max: options.max,
      timeWindow: options.windowMs,
      // request.ip honours the app's trustProxy setting, so behind Cloud Run it is the caller, not the proxy.
      keyGenerator: (request) => request.ip,
      errorResponseBuilder: (_request, context) =>
        new ApiError(
          429,
          `Rate limit reached: ${context.max} requests per ${context.after}. Retry in ${Math.ceil(context.ttl / 1000)} s.`,
          'rate_limit_error',
          null,
          'rate_limit_exceeded',
          Math.max(1, Math.ceil(context.ttl / 1000)),
        ),
    });
  },
);
