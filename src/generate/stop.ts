// Stop sequences over streamed text: releases only text that cannot be the start of a stop sequence.

export class StopMatcher {
  private pending = '';
  private stopped = false;

  constructor(private readonly stops: readonly string[]) {
    for (const s of stops) if (s.length === 0) throw new RangeError('stop sequences must not be empty');
  }

  /** True once a stop sequence has been seen; later text is ignored. */
  get done(): boolean {
    return this.stopped;
  }

  /** Adds text; returns what is safe to emit now. */
  push(text: string): string {
    if (this.stopped) return '';
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return out;
    }
    // Hold back the longest suffix that is a prefix of some stop sequence.
    let hold = 0;
    for (const s of this.stops) {
      const max = Math.min(s.length - 1, this.pending.length);
      for (let n = max; n > hold; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return out;
  }

  /** Releases held-back text at the end of generation (no stop sequence completed). */
  flush(): string {
    const out = this.stopped ? '' : this.pending;
    this.pending = '';
    return out;
  }
}
