// Training progress for people: a one-line bar redrawn with \r on a terminal, plain log lines otherwise.
import type { TrainProgress } from './trainer.js';

export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  const sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** One progress line: step, loss, tokens/s and ETA (plus a bar on terminals). */
export function progressLine(p: TrainProgress, bar: boolean): string {
  const width = 24;
  const done = Math.round((width * p.step) / Math.max(1, p.totalSteps));
  const head = bar ? `[${'#'.repeat(done)}${'.'.repeat(width - done)}] ` : '';
  return (
    `${head}step ${p.step}/${p.totalSteps}  loss ${p.loss.toFixed(4)}  ` +
    `${Math.round(p.tokensPerS)} tok/s  elapsed ${duration(p.elapsedS)}  ETA ${duration(p.etaS)}`
  );
}

/**
 * A progress callback writing to `sink`: on a TTY the line is redrawn at most every `intervalMs`; otherwise
 * a plain line is written about `lines` times over the run (and always for the last step).
 */
export function progressReporter(sink: ProgressSink, options: { lines?: number; intervalMs?: number } = {}) {
  const tty = sink.isTTY === true;
  const lines = options.lines ?? 20;
  const intervalMs = options.intervalMs ?? 100;
  let lastDraw = 0;
  return (p: TrainProgress): void => {
    const last = p.step === p.totalSteps;
    if (tty) {
      const now = Date.now();
      if (!last && now - lastDraw < intervalMs) return;
      lastDraw = now;
      sink.write(`\r${progressLine(p, true)}\u001b[K${last ? '\n' : ''}`);
      return;
    }
    const every = Math.max(1, Math.ceil(p.totalSteps / lines));
    if (p.step === 1 || p.step % every === 0 || last) sink.write(`${progressLine(p, false)}\n`);
  };
}
