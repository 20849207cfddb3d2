// Liveness (/health) and readiness (/ready) probes; both answer from the event loop without touching a worker.
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { sendError } from '../plugins/error-handler.js';
import type { ServiceState } from '../plugins/generation.js';

/** Why /ready is 503, in the codes generation requests get for the same state. */
const NOT_READY: Record<
  Exclude<ServiceState, 'ready'>,
  { message: string; code: string; retryAfter: number }
> = {
  loading: { message: 'The model is still loading.', code: 'model_loading', retryAfter: 5 },
  draining: { message: 'The server is shutting down.', code: 'shutting_down', retryAfter: 1 },
  failed: { message: 'The model could not be served.', code: 'workers_down', retryAfter: 10 },
};

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const noLimit = { config: { rateLimit: false } };
  app.get('/health', noLimit, async () => ({ status: 'ok' }));
  app.get('/ready', noLimit, async (_request, reply) => {
    const state = app.generation.state;
    // Ready once a worker can generate; the others may still be starting (a few ms after a cold start).
    const pool = app.generation.pool;
    if (state === 'ready')
      return { status: 'ready', workers: { ready: pool?.readyWorkers ?? 0, total: pool?.size ?? 0 } };
    // The error shape, as every non-2xx answer; `status` is kept beside it for probes and dashboards.
    const why = NOT_READY[state];
    const err = new ApiError(503, why.message, 'server_error', null, why.code, why.retryAfter);
    return sendError(reply, err, { status: state });
  });
}
