// Promises that resolve once a condition holds: the pool's "idle" and "all workers ready" are two of these.

/**
 * A condition that callers can wait for. `wait()` resolves at once when it already holds; otherwise it
 * resolves at the first `check()` that finds it holding. The owner calls `check()` after every change that
 * could make it hold.
 */
export class Waiters {
  private waiting: Array<() => void> = [];

  constructor(private readonly holds: () => boolean) {}

  wait(): Promise<void> {
    if (this.holds()) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Wakes every waiter if the condition holds now. */
  check(): void {
    if (this.waiting.length === 0 || !this.holds()) return;
    const woken = this.waiting;
    this.waiting = [];
    for (const wake of woken) wake();
  }

  /** Callers waiting now. */
  get count(): number {
    return this.waiting.length;
  }
}
