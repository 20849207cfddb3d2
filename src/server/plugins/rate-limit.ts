// Per-client rate limit (keyed on the client's address: the connection's peer, or what a trusted proxy reports; IPv6 by /64) answering 429 in OpenAI's shape.
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import type { RateLimitOptions } from '../defaults.js';
import { ApiError } from '../errors.js';
import { shared } from './shared.js';

export { DEFAULT_RATE_LIMIT, type RateLimitOptions } from '../defaults.js';

/**
 * The rate limit's key for a client address: an IPv4 address as it is (IPv4-mapped IPv6 included), an IPv6
 * address by its /64 network, since one subscriber gets a whole /64 and could otherwise take a fresh address,
 * and a fresh budget, for every request.
 */
export function clientKey(ip: string): string {
  if (!ip.includes(':')) return ip;
  const lower = ip.toLowerCase().split('%')[0];
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped) return mapped[1];
  const [head, tail = ''] = lower.split('::');
  const left = head ? head.split(':') : [];
  const right = lower.includes('::') && tail ? tail.split(':') : [];
  // An embedded IPv4 tail counts as two groups; it never reaches the first four.
  const groups = [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

export const rateLimitPlugin = shared<RateLimitOptions>(
  'rate-limit',
  async (app: FastifyInstance, options) => {
    await app.register(rateLimit, {
      global: true,
      max: options.max,
      timeWindow: options.windowMs,
      // request.ip honours the app's trustProxy setting, so behind Cloud Run it is the caller, not the proxy.
      keyGenerator: (request) => clientKey(request.ip),
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
