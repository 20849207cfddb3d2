// Liveness (/health) and readiness (/ready) probes; both answer from the event loop without touching a worker.
import type { FastifyInstance } from 'fastify';

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const noLimit = { config: { rateLimit: false } };
  app.get('/health', noLimit, async () => ({ status: 'ok' }));
  app.get('/ready', noLimit, async (_request, reply) => {
    const state = app.generation.state;
    if (state === 'ready') return { status: 'ready' };
    return reply.code(503).send({ status: state });
  });
}
