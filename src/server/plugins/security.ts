// Security headers on every response, with the strict Content-Security-Policy the chat page is written for.
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
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

export const securityPlugin = shared('security', async (app: FastifyInstance) => {
  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES },
    // Served over plain HTTP locally; Cloud Run terminates TLS and sets its own HSTS policy.
    strictTransportSecurity: false,
    // The page is never framed (the CSP says frame-ancestors 'none'; X-Frame-Options says it to old browsers).
    frameguard: { action: 'deny' },
  });
});
