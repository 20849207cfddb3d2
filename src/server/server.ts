// Listens on a port and shuts down gracefully: on SIGTERM/SIGINT it drains in-flight generations, closes, and resolves.
import type { FastifyInstance } from 'fastify';
import { type AppOptions, buildApp } from './app.js';

export interface ServerOptions extends AppOptions {
  port: number;
  host: string;
  /** How long in-flight generations may run after SIGTERM before they are cancelled (Cloud Run allows 10 s). */
  drainTimeoutMs?: number;
  /** Install SIGTERM/SIGINT handlers (the CLI does; tests that start several servers may not). */
  handleSignals?: boolean;
  /**
   * Listen only once this settles: the app is built meanwhile (so a model can load while the HTTP stack
   * starts), and a rejection closes it and rejects startServer with that error instead of listening.
   */
  listenAfter?: Promise<unknown>;
}

export interface RunningServer {
  app: FastifyInstance;
  /** http://host:port as listening. */
  url: string;
  /** Drains and closes; safe to call more than once. Resolves with the exit code. */
  shutdown(reason: string): Promise<number>;
  /** Resolves with the exit code once the server has closed (after a signal, a failed start or shutdown()). */
  closed: Promise<number>;
}

export const DRAIN_TIMEOUT_MS = 8000;

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const app = await buildApp(options);
  if (options.listenAfter) {
    try {
      // Finish the app (route schemas compile on ready) while the model is still loading.
      await app.ready();
      await options.listenAfter;
    } catch (err) {
      await app.close().catch(() => {});
      throw err;
    }
  }
  const drainTimeoutMs = options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS;
  let resolveClosed!: (code: number) => void;
  const closed = new Promise<number>((resolve) => {
    resolveClosed = resolve;
  });
  let shuttingDown: Promise<number> | null = null;

  const onSignal = (signal: NodeJS.Signals) => {
    void shutdown(`received ${signal}`);
  };
  function shutdown(reason: string, code = 0): Promise<number> {
    if (shuttingDown) return shuttingDown;
    shuttingDown = (async () => {
      app.log.info(`shutting down (${reason}): draining for up to ${drainTimeoutMs} ms`);
      const started = performance.now();
      let exitCode = code;
      try {
        const { cancelled } = await app.generation.drain(drainTimeoutMs);
        if (cancelled > 0) app.log.warn(`drain timed out: cancelled ${cancelled} generations`);
        await app.close();
        app.log.info(`closed after ${Math.round(performance.now() - started)} ms`);
      } catch (err) {
        app.log.error(`shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
        exitCode = 1;
      }
      if (options.handleSignals !== false) {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      }
      resolveClosed(exitCode);
      return exitCode;
    })();
    return shuttingDown;
  }

  if (options.handleSignals !== false) {
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }
  let url: string;
  try {
    url = await app.listen({ port: options.port, host: options.host });
  } catch (err) {
    await app.close().catch(() => {});
    throw err;
  }
  // A model or worker that cannot start ends the server: never a half-working service.
  app.generation.ready.catch((err: Error) => {
    app.log.fatal(`the model could not be served: ${err.message}`);
    void shutdown('start-up failed', 1);
  });
  return { app, url, shutdown, closed };
}
