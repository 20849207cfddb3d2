// Stop sequences over streamed text: releases only text that cannot be the start of a stop sequence.
// Each stop sequence runs a Knuth–Morris–Pratt automaton over the text one UTF-16 unit at a time, so the
// work is linear in the text whatever the stop strings are (no re-scan of held text, no suffix loops).

/** One stop sequence and its failure table: fail[i] is the longest proper border of stop[0..i]. */
class StopAutomaton {
  readonly fail: Int32Array;
  /** Length of the longest prefix of `stop` that ends the text seen so far. */
  state = 0;

  constructor(readonly stop: string) {
    const n = stop.length;
    this.fail = new Int32Array(n);
    let k = 0;
    for (let i = 1; i < n; i++) {
      const c = stop.charCodeAt(i);
      while (k > 0 && stop.charCodeAt(k) !== c) k = this.fail[k - 1];
      if (stop.charCodeAt(k) === c) k++;
      this.fail[i] = k;
    }
  }

  /** Feeds one code unit; returns true when the whole stop sequence has just been matched. */
  feed(c: number): boolean {
    const { stop, fail } = this;
    let k = this.state;
    // A completed match never stays in the state: matching stops the text, so `k < stop.length` here.
    while (k > 0 && stop.charCodeAt(k) !== c) k = fail[k - 1];
    if (stop.charCodeAt(k) === c) k++;
    this.state = k;
    return k === stop.length;
  }
}

export class StopMatcher {
  private readonly automata: StopAutomaton[];
  /** Text received but not released: always a suffix that some stop sequence may still start with. */
  private pending = '';
  private stopped = false;

  constructor(stops: readonly string[]) {
    for (const s of stops) if (s.length === 0) throw new RangeError('stop sequences must not be empty');
    this.automata = [...new Set(stops)].map((s) => new StopAutomaton(s));
  }

  /** True once a stop sequence has been seen; later text is ignored. */
  get done(): boolean {
    return this.stopped;
  }

  /**
   * Adds text; returns what is safe to emit now. The stop sequence that completes first in the text ends
   * it (the longest, when several complete at the same character), and the text from where that sequence
   * starts is dropped: the same cut however the text is split into pushes.
   */
  push(text: string): string {
    if (this.stopped || text.length === 0) return '';
    if (this.automata.length === 0) return text;
    const all = this.pending + text;
    const start = this.pending.length;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      // Of the sequences completing at this character, the longest starts first: the cut is at its start.
      let matched = 0;
      for (const a of this.automata) if (a.feed(c) && a.stop.length > matched) matched = a.stop.length;
      if (matched > 0) {
        this.stopped = true;
        this.pending = '';
        return all.slice(0, start + i + 1 - matched);
      }
    }
    // Hold back the longest suffix that is a prefix of some stop sequence (the automata's states).
    let hold = 0;
    for (const a of this.automata) if (a.state > hold) hold = a.state;
    this.pending = all.slice(all.length - hold);
    return all.slice(0, all.length - hold);
  }

  /** Releases held-back text at the end of generation (no stop sequence completed). */
  flush(): string {
    const out = this.stopped ? '' : this.pending;
    this.pending = '';
    return out;
  }
}
