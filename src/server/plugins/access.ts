// Access control for a public URL: optional API keys (Authorization: Bearer, compared in constant time) and optional CORS.
import { createHash, timingSafeEqual } from 'node:crypto';
import cors from '@fastify/cors';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import { sendError } from './error-handler.js';
import { shared } from './shared.js';

/** Routes that answer without a key: the probes, and the chat page's own files (they hold no data). */
const OPEN_ROUTES = new Set(['/health', '/ready', '/', '/static/:file']);

export interface AccessOptions {
  /** Keys accepted as `Authorization: Bearer <key>`; empty or absent: no key is needed. */
  apiKeys?: readonly string[];
  /** Origins allowed to call the API from a browser ('*' for any); empty or absent: no CORS headers. */
  corsOrigins?: readonly string[];
}

export { parseList } from '../keys.js';

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/**
 * Whether `presented` is one of the keys. Both sides are hashed first, so every comparison is between 32
 * bytes whatever the lengths, and every key is compared (no early exit): the time says nothing of how much
 * of a key was right, nor which key matched.
 */
export function keyMatches(presented: string, keyDigests: readonly Buffer[]): boolean {
  const candidate = digest(presented);
  let found = false;
  for (const key of keyDigests) found = timingSafeEqual(candidate, key) || found;
  return found;
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
function bearer(header: string | undefined): string | null {
  if (!header) return null;
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space).toLowerCase() !== 'bearer') return null;
  return header.slice(space + 1).trim();
}

function unauthorized(message: string): ApiError {
  return new ApiError(401, message, 'invalid_request_error', null, 'invalid_api_key');
}

/** CORS for the origins given (none: no CORS headers, no preflight answers). Registered before the rate limit, so its 429s carry the headers too. */
export const corsPlugin = shared<AccessOptions>('cors', async (app: FastifyInstance, options) => {
  const origins = options.corsOrigins ?? [];
  if (origins.length === 0) return;
  await app.register(cors, {
    origin: origins.includes('*') ? '*' : [...origins],
    methods: ['GET', 'POST', 'OPTIONS'],
    allowedHeaders: ['authorization', 'content-type'],
    exposedHeaders: ['retry-after'],
    maxAge: 600,
    // Preflights are answered by @fastify/cors itself: they carry no Authorization header.
    preflightContinue: false,
  });
});

/** The API key check (none given: every request passes). Registered after the rate limit, so guesses count against it. */
export const apiKeyPlugin = shared<AccessOptions>('api-key', async (app: FastifyInstance, options) => {
  const keys = (options.apiKeys ?? []).map(digest);
  if (keys.length === 0) return;
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.method === 'OPTIONS') return;
    const route = request.routeOptions.url;
    if (route !== undefined && OPEN_ROUTES.has(route)) return;
    const token = bearer(request.headers.authorization);
    if (token === null) {
      reply.header('www-authenticate', 'Bearer');
      return sendError(
        reply,
        unauthorized(
          'Missing API key: send it as "Authorization: Bearer <key>" (this server was started with --api-key).',
        ),
      );
    }
    if (!keyMatches(token, keys)) {
      reply.header('www-authenticate', 'Bearer error="invalid_token"');
      return sendError(reply, unauthorized('Incorrect API key provided.'));
    }
  });
});
