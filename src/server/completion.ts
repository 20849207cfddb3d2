// Runs a route's generations (one per choice): waits for the whole texts, or streams them as server-sent events; a client that leaves cancels them.
import { PassThrough } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { DescribedLogprob } from '../generate/logprobs.js';
import { ApiError, badRequest, contextLengthExceeded, unavailable } from './errors.js';
import { ContextOverflow, type Job, type JobResult } from './workers/job.js';
import type { EchoedPrompt, JobRequest } from './workers/protocol.js';

export interface CompletionSpec {
  request: JobRequest;
  /** Request fields named by a context-length error. */
  promptParam: string;
  maxParam: string;
}

/** Route-specific event bodies of a stream of one or more choices (`index`: the choice's place in specs). */
export interface StreamFormat {
  /** Sent once a choice's prompt is accepted (e.g. the chat role chunk, an echoed prompt); null for none. */
  first(index: number, echo?: EchoedPrompt): unknown | null;
  /** A chunk for released text and its tokens' log-probabilities; null to skip this piece. */
  delta(index: number, text: string, logprobs?: DescribedLogprob[]): unknown | null;
  /** The chunk that closes one choice (its finish reason), sent when that choice ends. */
  finish(index: number, result: JobResult): unknown;
  /** The closing chunks after every choice has ended (usage). */
  last(results: JobResult[]): unknown[];
}

function mapJobError(err: unknown, spec: CompletionSpec): unknown {
  if (err instanceof ContextOverflow) {
    if (err.promptTokens === 0)
      return badRequest(`${spec.promptParam} is empty after tokenization.`, spec.promptParam);
    return contextLengthExceeded(
      err.promptTokens,
      err.maxNewTokens,
      err.context,
      spec.promptParam,
      spec.maxParam,
    );
  }
  return err;
}

/** Cancels the jobs if the connection closes before the response was fully written. */
function cancelOnDisconnect(reply: FastifyReply, jobs: readonly Job[]): void {
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) for (const job of jobs) job.cancel();
  });
}

const shuttingDown = () =>
  unavailable('The server is shutting down; the generation was stopped.', 'shutting_down');

/**
 * Submits one job per spec; a job the pool refuses (a full queue) cancels those already submitted, so a
 * request gets all of its choices or none.
 */
function submitAll(
  request: FastifyRequest,
  specs: readonly CompletionSpec[],
  handlers: (index: number) => Parameters<FastifyRequest['server']['generation']['submit']>[1],
): Job[] {
  const jobs: Job[] = [];
  try {
    specs.forEach((spec, i) => {
      jobs.push(request.server.generation.submit(spec.request, handlers(i)));
    });
  } catch (err) {
    for (const job of jobs) job.cancel();
    throw err;
  }
  return jobs;
}

/** Waits for every job; the first failure cancels the others and is thrown, mapped for the route. */
async function allResults(jobs: readonly Job[], specs: readonly CompletionSpec[]): Promise<JobResult[]> {
  try {
    return await Promise.all(
      jobs.map((job, i) => job.result.catch((err: unknown) => Promise.reject(mapJobError(err, specs[i])))),
    );
  } catch (err) {
    for (const job of jobs) job.cancel();
    throw err;
  }
}

/** Generates every choice to the end and returns the results in order; a shutdown that cut one short is a 503. */
export async function completeAll(
  request: FastifyRequest,
  reply: FastifyReply,
  specs: readonly CompletionSpec[],
): Promise<JobResult[]> {
  const jobs = submitAll(request, specs, () => ({}));
  cancelOnDisconnect(reply, jobs);
  const results = await allResults(jobs, specs);
  if (results.some((r) => r.cancelled)) throw shuttingDown();
  return results;
}

/** One generation to the end (completeAll with one spec). */
export async function completeText(
  request: FastifyRequest,
  reply: FastifyReply,
  spec: CompletionSpec,
): Promise<JobResult> {
  return (await completeAll(request, reply, [spec]))[0];
}

function event(body: unknown): string {
  return `data: ${JSON.stringify(body)}\n\n`;
}

/**
 * Streams the choices as SSE. Headers are sent only once every worker has accepted its prompt, so a prompt
 * that does not fit still gets a proper 400; failures after that end the stream with an `error` event.
 */
export async function streamAll(
  request: FastifyRequest,
  reply: FastifyReply,
  specs: readonly CompletionSpec[],
  format: StreamFormat,
): Promise<FastifyReply> {
  const out = new PassThrough();
  // Events are written once per turn of the event loop: what one wake-up brings from the workers (the start
  // and first text, or the last text and the end) leaves in one write, so one packet wakes the client.
  let buffered = '';
  let scheduled = false;
  const write = (text: string) => {
    buffered += text;
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      if (buffered !== '' && !out.writableEnded && !out.destroyed) out.write(buffered);
      buffered = '';
    });
  };
  const end = (text: string) => {
    const all = buffered + text;
    buffered = '';
    out.end(all);
  };
  let anyStarted = false;
  const starts = specs.map(() => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    return { promise, resolve };
  });
  const jobs = submitAll(request, specs, (i) => ({
    onStart(_promptTokens, _maxNewTokens, echo) {
      anyStarted = true;
      const first = format.first(i, echo);
      if (first !== null) write(event(first));
      starts[i].resolve();
    },
    onToken(text, logprobs) {
      const chunk = format.delta(i, text, logprobs);
      if (chunk !== null) write(event(chunk));
    },
  }));
  cancelOnDisconnect(reply, jobs);
  try {
    await Promise.all(
      jobs.map((job, i) =>
        Promise.race([starts[i].promise, job.result]).catch((err: unknown) =>
          Promise.reject(mapJobError(err, specs[i])),
        ),
      ),
    );
  } catch (err) {
    for (const job of jobs) job.cancel();
    out.destroy();
    throw err;
  }
  // Cancelled while still queued (a drain that ran out of time): nothing was sent yet, so answer a plain
  // 503 with Retry-After, as a non-streamed request gets, instead of a 200 stream holding only an error.
  if (!anyStarted) {
    const settled = await Promise.allSettled(jobs.map((job) => job.result));
    if (settled.some((s) => s.status === 'fulfilled' && s.value.cancelled)) {
      out.destroy();
      throw shuttingDown();
    }
  }
  // Each choice closes as it ends; the stream closes once all have.
  const closed = jobs.map((job, i) =>
    job.result.then((result) => {
      if (!result.cancelled) write(event(format.finish(i, result)));
      return result;
    }),
  );
  Promise.all(closed).then(
    (results) => {
      if (results.some((r) => r.cancelled)) {
        end(event(shuttingDown().toBody()));
        return;
      }
      end(`${format.last(results).map(event).join('')}data: [DONE]\n\n`);
    },
    (err: unknown) => {
      for (const job of jobs) job.cancel();
      const apiError =
        err instanceof ApiError
          ? err
          : new ApiError(500, 'Generation failed.', 'server_error', null, 'generation_failed');
      end(event(apiError.toBody()));
    },
  );
  reply
    .code(200)
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-cache')
    .header('x-accel-buffering', 'no');
  // What the client has not taken yet waits in `out`: counted against the server's unsent budget, and a
  // client that takes nothing for long is closed (see the connections plugin).
  request.server.connections.holdsUnsent(request.raw.socket, () => out.writableLength + out.readableLength);
  return reply.send(out);
}
