// Runs one generation for a route: waits for the whole text, or streams it as server-sent events; a client that leaves cancels it.
import { PassThrough } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, badRequest, contextLengthExceeded, unavailable } from './errors.js';
import { ContextOverflow, type Job, type JobResult } from './workers/pool.js';
import type { JobRequest } from './workers/protocol.js';

export interface CompletionSpec {
  request: JobRequest;
  /** Request fields named by a context-length error. */
  promptParam: string;
  maxParam: string;
}

/** Route-specific event bodies of a stream. */
export interface StreamFormat {
  /** Sent once the prompt is accepted (e.g. the chat role chunk); null for none. */
  first(): unknown | null;
  /** A chunk for released text; null to skip this piece. */
  delta(text: string): unknown | null;
  /** The closing chunks (finish reason, usage). */
  last(result: JobResult): unknown[];
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

/** Cancels the job if the connection closes before the response was fully written. */
function cancelOnDisconnect(reply: FastifyReply, job: Job): void {
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) job.cancel();
  });
}

/** Generates to the end and returns the result; a shutdown that cut it short becomes a 503. */
export async function completeText(
  request: FastifyRequest,
  reply: FastifyReply,
  spec: CompletionSpec,
): Promise<JobResult> {
  const job = request.server.generation.submit(spec.request);
  cancelOnDisconnect(reply, job);
  let result: JobResult;
  try {
    result = await job.result;
  } catch (err) {
    throw mapJobError(err, spec);
  }
  if (result.cancelled)
    throw unavailable('The server is shutting down; the generation was stopped.', 'shutting_down');
  return result;
}

function event(body: unknown): string {
  return `data: ${JSON.stringify(body)}\n\n`;
}

/**
 * Streams a generation as SSE. Headers are sent only once the worker has accepted the prompt, so a prompt
 * that does not fit still gets a proper 400; failures after that end the stream with an `error` event.
 */
export async function streamText(
  request: FastifyRequest,
  reply: FastifyReply,
  spec: CompletionSpec,
  format: StreamFormat,
): Promise<FastifyReply> {
  const out = new PassThrough();
  // Events are written once per turn of the event loop: what one wake-up brings from the worker (the start
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
  let resolveStart!: () => void;
  let didStart = false;
  const started = new Promise<void>((resolve) => {
    resolveStart = resolve;
  });
  const job = request.server.generation.submit(spec.request, {
    onStart() {
      didStart = true;
      const first = format.first();
      if (first !== null) write(event(first));
      resolveStart();
    },
    onToken(text) {
      const chunk = format.delta(text);
      if (chunk !== null) write(event(chunk));
    },
  });
  cancelOnDisconnect(reply, job);
  try {
    await Promise.race([started, job.result]);
  } catch (err) {
    out.destroy();
    throw mapJobError(err, spec);
  }
  // Cancelled while still queued (a drain that ran out of time): nothing was sent yet, so answer a plain
  // 503 with Retry-After, as a non-streamed request gets, instead of a 200 stream holding only an error.
  if (!didStart && (await job.result).cancelled) {
    out.destroy();
    throw unavailable('The server is shutting down; the generation was stopped.', 'shutting_down');
  }
  job.result.then(
    (result) => {
      if (result.cancelled) {
        end(
          event(
            unavailable('The server is shutting down; the generation was stopped.', 'shutting_down').toBody(),
          ),
        );
        return;
      }
      end(`${format.last(result).map(event).join('')}data: [DONE]\n\n`);
    },
    (err) => {
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
  return reply.send(out);
}
