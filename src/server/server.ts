// Listens on a port and shuts down within a deadline: on SIGTERM/SIGINT it drains in-flight generations, closes every connection, and resolves.
import type { FastifyInstance } from 'fastify';
import { type AppOptions, buildApp } from './app.js';

export interface ServerOptions extends AppOptions {
  port: number;
  host: string;
  /**
   * The whole shutdown, from the signal to the process's end (Cloud Run kills at 10 s). Generations get all of
   * it but CLOSE_GRACE_MS + EXIT_MARGIN_MS; then answers get CLOSE_GRACE_MS to finish before every connection
   * still open is closed; EXIT_MARGIN_MS is left for the workers and the process to end.
   */
  drainTimeoutMs?: number;
  /**
   * This server owns the process: it handles SIGTERM/SIGINT and, should closing ever hang past the deadline,
   * ends the process itself (the CLI does; tests that start several servers may not).
   */
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

/** A signal arrived before the server listened: it was closed without serving (exit 0, as after a drain). */
export class StoppedBeforeListening extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`received ${signal} before listening`);
  }
}

export const DRAIN_TIMEOUT_MS = 8000;
/** The part of the drain kept for connections: answers under way finish, then whatever is still open is closed. */
export const CLOSE_GRACE_MS = 1000;
/** The end of the drain kept for closing the workers and ending the process. */
export const EXIT_MARGIN_MS = 1000;

/** Resolves true once `promise` settles, or false at `deadline` (a performance.now() time), whichever is first. */
function settlesBy(promise: Promise<unknown>, deadline: number): Promise<boolean> {
  const left = deadline - performance.now();
  if (left <= 0)
    return Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      Promise.resolve(false),
    ]);
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), left);
    }),
  ]).finally(() => clearTimeout(timer));
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const drainTimeoutMs = options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS;
  const ownsProcess = options.handleSignals !== false;
  // Signals are taken from the start: one that comes while the model loads stops the start (exit 0).
  let signalled: ((signal: NodeJS.Signals) => void) | null = null;
  let early: NodeJS.Signals | null = null;
  let earlySignal!: (signal: NodeJS.Signals) => void;
  const signalledEarly = new Promise<NodeJS.Signals>((resolve) => {
    earlySignal = resolve;
  });
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) signalled(signal);
    else {
      early ??= signal;
      earlySignal(signal);
    }
  };
  const removeSignals = () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
  if (ownsProcess) {
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }

  let app: FastifyInstance;
  try {
    app = await buildApp(options);
  } catch (err) {
    removeSignals();
    throw err;
  }
  const stopBeforeListening = async (signal: NodeJS.Signals): Promise<never> => {
    app.log.info(`received ${signal} while starting: closing without serving`);
    await app.close().catch(() => {});
    removeSignals();
    throw new StoppedBeforeListening(signal);
  };
  if (options.listenAfter) {
    let outcome: { signal: NodeJS.Signals } | null;
    try {
      // Finish the app (route schemas compile on ready) while the model is still loading.
      await app.ready();
      outcome = await Promise.race([
        options.listenAfter.then(() => null),
        signalledEarly.then((signal) => ({ signal })),
      ]);
    } catch (err) {
      await app.close().catch(() => {});
      removeSignals();
      throw err;
    }
    if (outcome) await stopBeforeListening(outcome.signal);
  }
  if (early) await stopBeforeListening(early);

  let resolveClosed!: (code: number) => void;
  const closed = new Promise<number>((resolve) => {
    resolveClosed = resolve;
  });
  let shuttingDown: Promise<number> | null = null;

  function shutdown(reason: string, code = 0): Promise<number> {
    if (shuttingDown) return shuttingDown;
    shuttingDown = (async () => {
      const started = performance.now();
      // Connections are all closed by `deadline`; the process ends by started + drainTimeoutMs.
      const deadline = started + Math.max(0, drainTimeoutMs - EXIT_MARGIN_MS);
      app.log.info(`shutting down (${reason}): draining for up to ${drainTimeoutMs} ms`);
      let exitCode = code;
      // The last resort of a process owner: whatever hangs, the process ends by the deadline.
      const failsafe = ownsProcess
        ? setTimeout(() => {
            process.stderr.write(
              `${JSON.stringify({ severity: 'WARNING', message: `shutdown still running at the ${drainTimeoutMs} ms deadline: exiting` })}\n`,
            );
            process.exit(exitCode);
          }, drainTimeoutMs)
        : null;
      failsafe?.unref();
      try {
        // New answers close their connections; idle keep-alive ones are closed with the listener, below.
        app.connections.beginDrain();
        const generationsBy = deadline - CLOSE_GRACE_MS;
        const drain = app.generation.drain(Math.max(0, generationsBy - performance.now()));
        if (await settlesBy(drain, generationsBy + CLOSE_GRACE_MS / 2)) {
          const { cancelled } = await drain;
          if (cancelled > 0) app.log.warn(`drain timed out: cancelled ${cancelled} generations`);
        } else app.log.warn('generations still running after their cancel: closing anyway');
        // Stop listening; connections close as their answers end (Connection: close), idle ones at once.
        const closing = app.close();
        const idle = setInterval(() => app.connections.closeIdle(), 50);
        const graceEnd = Math.min(deadline, performance.now() + CLOSE_GRACE_MS);
        const inTime = await settlesBy(closing, graceEnd);
        clearInterval(idle);
        if (!inTime) {
          const n = app.connections.closeAll();
          app.log.info(
            `closed ${n} connection${n === 1 ? '' : 's'} still open ${Math.round(performance.now() - started)} ms after the signal (requests half sent, answers unread)`,
          );
        }
        await closing;
        app.log.info(`closed after ${Math.round(performance.now() - started)} ms`);
      } catch (err) {
        app.log.error(`shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
        exitCode = 1;
      }
      if (failsafe) clearTimeout(failsafe);
      removeSignals();
      resolveClosed(exitCode);
      return exitCode;
    })();
    return shuttingDown;
  }
  let url: string;
  try {
    url = await app.listen({ port: options.port, host: options.host });
  } catch (err) {
    await app.close().catch(() => {});
    removeSignals();
    throw err;
  }
  signalled = (signal) => {
    void shutdown(`received ${signal}`);
  };
  // A signal that came while it started listening drains at once.
  if (early) signalled(early);
  // A model or worker that cannot start ends the server: never a half-working service.
  app.generation.ready.catch((err: Error) => {
    app.log.fatal(`the model could not be served: ${err.message}`);
    void shutdown('start-up failed', 1);
  });
  return { app, url, shutdown, closed };
}
