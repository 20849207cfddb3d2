// Logs a request whose connection closed before its answer was complete: at info, with the phase and the reason (the client left, or the server closed it and why) — never as a server error.
import type { FastifyInstance } from 'fastify';
import { logDisconnect } from '../logging.js';
import { shared } from './shared.js';

export const disconnectLogPlugin = shared('disconnect-log', async (app: FastifyInstance) => {
  // A callback hook: no promise per request.
  app.addHook('onRequest', (request, reply, done) => {
    const res = reply.raw;
    // Read now: once the connection is gone its address is too.
    const ip = request.ip;
    // 'finish': the whole answer went to the connection (injected requests emit it too, unlike writableFinished).
    let finished = false;
    res.once('finish', () => {
      finished = true;
    });
    res.once('close', () => {
      if (finished) return;
      const reason = app.connections.reasonFor(request.raw.socket) ?? 'the client closed the connection';
      logDisconnect(request, reply, reason, ip);
    });
    done();
  });
});
