// Security headers on every response, with the strict Content-Security-Policy the chat page is written for.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import helmet, { type HelmetOptions } from 'helmet';
import { shared } from './shared.js';

/** The CSP of the HTTP contract: no inline scripts or styles, same-origin everything, no framing. */
export const CSP_DIRECTIVES = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'none'"],
  frameAncestors: ["'none'"],
};

const HELMET_OPTIONS: HelmetOptions = {
  contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES },
  // Served over plain HTTP locally; Cloud Run terminates TLS and sets its own HSTS policy.
  strictTransportSecurity: false,
  // The page is never framed (the CSP says frame-ancestors 'none'; X-Frame-Options says it to old browsers).
  xFrameOptions: { action: 'deny' },
};

/**
 * The headers helmet sets with our options. None of them depends on the request (no CSP nonces), so they are
 * computed once by running helmet's middleware against a recorder, instead of rebuilding them per response.
 */
export function helmetHeaders(options: HelmetOptions = HELMET_OPTIONS): Readonly<Record<string, string>> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  let failure: unknown = null;
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    if (err) failure = err;
  });
  if (failure) throw failure;
  return Object.freeze(headers);
}

let computed: Readonly<Record<string, string>> | null = null;

/** The headers every answer carries, computed once: replies set them in onRequest, and answers written outside Fastify's routes (client errors, error replies) set them too. */
export function securityHeaders(): Readonly<Record<string, string>> {
  computed ??= helmetHeaders();
  return computed;
}

export const securityPlugin = shared('security', async (app: FastifyInstance) => {
  const headers = securityHeaders();
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers);
    done();
  });
});
