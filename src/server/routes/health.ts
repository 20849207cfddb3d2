// Liveness (/health) and readiness (/ready) probes; both answer from the event loop without touching a worker.
import type { FastifyInstance } from 'fastify';

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const noLimit = { config: { rateLimit: false } };
  app.get('/health', noLimit, async () => ({ status: 'ok' }));
  app.get('/ready', noLimit, async (_request, reply) => {
    const state = app.generation.state;
    // Ready once a worker can generate; the others may still be starting (a few ms after a cold start).
    const pool = app.generation.pool;
    if (state === 'ready')
      return { status: 'ready', workers: { ready: pool?.readyWorkers ?? 0, total: pool?.size ?? 0 } };
    return reply.code(503).send({ status: state });
  });
}
