// One generation as the pool tracks it: its request, its handlers, its state and the promise of its result.
import type { DescribedLogprob } from '../../generate/logprobs.js';
import type { EchoedPrompt, JobOutcome, JobRequest } from './protocol.js';

export interface JobHandlers {
  /**
   * The prompt fit in the context: called with the first generated text, just before its onToken (or, with
   * echo, as soon as the prompt is scored, with its tokens).
   */
  onStart?(promptTokens: number, maxNewTokens: number, echo?: EchoedPrompt): void;
  /**
   * Text released since the last call (several tokens' worth when coalesced), and with request.logprobs the
   * log-probabilities of the tokens that released it; called when either is not empty.
   */
  onToken?(text: string, logprobs?: DescribedLogprob[]): void;
}

export interface JobResult extends JobOutcome {
  /** True when the job was cancelled before it finished; text is what was generated until then. */
  cancelled: boolean;
}

/** Thrown by the worker side when the prompt does not fit; routes turn it into their own 400. */
export class ContextOverflow extends Error {
  override name = 'ContextOverflow';
  constructor(
    readonly promptTokens: number,
    readonly maxNewTokens: number,
    readonly context: number,
  ) {
    super(`prompt of ${promptTokens} tokens + ${maxNewTokens} new tokens exceed the context of ${context}`);
  }
}

/** 'queued' (in the pool's queue) → 'running' (posted to a worker, in its batch) → 'ended'. */
export type JobState = 'queued' | 'running' | 'ended';

export class Job {
  readonly result: Promise<JobResult>;
  state: JobState = 'queued';
  cancelRequested = false;
  readonly submittedAt = performance.now();
  startedAt = 0;
  /** Text received so far, and the tokens generated and in the prompt as the worker last reported. */
  text = '';
  tokens = 0;
  promptTokens = 0;
  private settle!: { resolve: (r: JobResult) => void; reject: (e: Error) => void };

  constructor(
    readonly id: number,
    readonly request: JobRequest,
    readonly handlers: JobHandlers,
    private readonly onCancel: (job: Job) => void,
    /** Bytes of KV cache it reserves while it runs (see requestKvBytes). */
    readonly kvBytes = 0,
  ) {
    this.result = new Promise<JobResult>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // A caller that only cancels must not trigger an unhandled rejection.
    this.result.catch(() => {});
  }

  /** Whether the worker posts this job's text as it comes (the caller streams it). */
  get streamed(): boolean {
    return this.handlers.onToken !== undefined;
  }

  /** Stops the job: a queued one is dropped, a running one stops at the next token. Idempotent. */
  cancel(): void {
    this.onCancel(this);
  }

  /** Ends the job with `result`; returns false when it had already ended. */
  finish(result: JobResult): boolean {
    if (this.state === 'ended') return false;
    this.state = 'ended';
    this.settle.resolve(result);
    return true;
  }

  /** Ends the job with `err`; returns false when it had already ended. */
  fail(err: Error): boolean {
    if (this.state === 'ended') return false;
    this.state = 'ended';
    this.settle.reject(err);
    return true;
  }

  /** The result of a job cancelled now: what it generated so far. */
  cancelledResult(): JobResult {
    return {
      text: this.text,
      finishReason: 'length',
      promptTokens: this.promptTokens,
      completionTokens: this.tokens,
      cancelled: true,
    };
  }
}
