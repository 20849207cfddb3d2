// Renders the model card: config, parameter count, training figures and the loss curve as an SVG polyline.
import { h, svg } from './dom.js';
import { curvePoints, formatCount, formatDuration, type ModelInfo, type Training } from './model-info.js';

const BOX = { width: 300, height: 120, pad: 8 };

function row(term: string, value: string): HTMLElement[] {
  return [h('dt', {}, term), h('dd', {}, value)];
}

function lossCurve(training: Training): HTMLElement | null {
  const curve = training.lossCurve;
  if (curve.length < 2) return null;
  const first = curve[0];
  const last = curve[curve.length - 1];
  const losses = curve.map((p) => p[1]);
  const label = `Training loss from ${first[1].toFixed(3)} at step ${first[0]} to ${last[1].toFixed(3)} at step ${last[0]}`;
  const chart = svg(
    'svg',
    {
      class: 'loss-chart',
      viewBox: `0 0 ${BOX.width} ${BOX.height}`,
      role: 'img',
      'aria-labelledby': 'loss-chart-title',
      preserveAspectRatio: 'none',
    },
    svg('title', { id: 'loss-chart-title' }, label),
    svg('rect', {
      class: 'loss-frame',
      x: '0.5',
      y: '0.5',
      width: `${BOX.width - 1}`,
      height: `${BOX.height - 1}`,
    }),
    svg('polyline', {
      class: 'loss-line',
      points: curvePoints(curve, BOX),
      'vector-effect': 'non-scaling-stroke',
    }),
  );
  const max = Math.max(...losses);
  const min = Math.min(...losses);
  return h(
    'figure',
    { className: 'loss-figure' },
    chart,
    h(
      'figcaption',
      {},
      `Loss ${max.toFixed(2)} → ${min.toFixed(2)} (min) over ${formatCount(last[0] - first[0])} steps`,
    ),
  );
}

/** Replaces the card's content with the model's details. */
export function renderModelCard(container: HTMLElement, info: ModelInfo): void {
  const facts: HTMLElement[] = [...row('Name', info.id)];
  if (info.parameters !== null) facts.push(...row('Parameters', formatCount(info.parameters)));
  const c = info.config;
  if (c) {
    facts.push(
      ...row('Layers', String(c.n_layer)),
      ...row('Heads', String(c.n_head)),
      ...row('Embedding', String(c.n_embd)),
      ...row('Context', `${c.n_positions} tokens`),
      ...row('Vocabulary', formatCount(c.vocab_size)),
    );
  }
  const parts: HTMLElement[] = [h('dl', { className: 'facts' }, ...facts)];

  const t = info.training;
  if (t) {
    const training: HTMLElement[] = [];
    if (t.finalLoss !== null) training.push(...row('Final loss', t.finalLoss.toFixed(4)));
    if (t.steps !== null) training.push(...row('Steps', formatCount(t.steps)));
    if (t.wallTimeS !== null) training.push(...row('Training time', formatDuration(t.wallTimeS)));
    if (t.tokensPerS !== null) training.push(...row('Speed', `${formatCount(t.tokensPerS)} tokens/s`));
    if (t.preset !== null) training.push(...row('Preset', t.preset));
    parts.push(h('h3', {}, 'Training'), h('dl', { className: 'facts' }, ...training));
    const chart = lossCurve(t);
    if (chart) parts.push(chart);
  } else {
    parts.push(h('p', { className: 'muted' }, 'No training report was found for this model.'));
  }
  if (info.systemPrompt) {
    parts.push(
      h(
        'details',
        { className: 'system-prompt' },
        h('summary', {}, 'System prompt'),
        h('p', {}, info.systemPrompt),
      ),
    );
  }
  container.replaceChildren(...parts);
  container.setAttribute('aria-busy', 'false');
}

/** Shows why the card could not load. */
export function renderModelCardError(container: HTMLElement, message: string): void {
  container.replaceChildren(h('p', { className: 'muted' }, message));
  container.setAttribute('aria-busy', 'false');
}
