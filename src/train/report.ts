// The training report written into the model directory: loss-curve SVG (drawn by hand) and a model card.
import type { GPTConfig } from '../engine/config.js';
import type { HyperParams } from './presets.js';

/** Escapes text for SVG/XML content and attributes. */
function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceStep(range: number, ticks: number): number {
  const raw = range / Math.max(1, ticks);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

function label(x: number): string {
  return Number.isInteger(x)
    ? String(x)
    : x.toFixed(Math.max(0, -Math.floor(Math.log10(Math.abs(x) || 1)) + 1));
}

/** A standalone SVG line chart of loss per step, with axes, ticks, labels and the final eval loss marked. */
export function lossCurveSvg(losses: number[], options: { title?: string; evalLoss?: number } = {}): string {
  const W = 640;
  const H = 360;
  const m = { left: 56, right: 16, top: 36, bottom: 44 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const finite = losses.filter((l) => Number.isFinite(l));
  const extra = options.evalLoss !== undefined && Number.isFinite(options.evalLoss) ? [options.evalLoss] : [];
  const yMaxRaw = Math.max(1e-9, ...finite, ...extra);
  const yStep = niceStep(yMaxRaw, 5);
  const yMax = Math.ceil(yMaxRaw / yStep) * yStep;
  const n = Math.max(1, losses.length);
  const xStep = Math.max(1, niceStep(n, 6));
  const x = (step: number) => m.left + (pw * step) / n;
  const y = (loss: number) => m.top + ph - (ph * loss) / yMax;
  // At most ~600 points: average neighbouring steps so the file stays small.
  const per = Math.max(1, Math.ceil(losses.length / 600));
  const points: string[] = [];
  for (let i = 0; i < losses.length; i += per) {
    const chunk = losses.slice(i, i + per).filter((l) => Number.isFinite(l));
    if (chunk.length === 0) continue;
    const mean = chunk.reduce((a, b) => a + b, 0) / chunk.length;
    points.push(`${x(i + chunk.length).toFixed(1)},${y(mean).toFixed(1)}`);
  }
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${xml(options.title ?? 'Training loss')}</text>`,
  );
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    const yy = y(v).toFixed(1);
    parts.push(
      `<line x1="${m.left}" y1="${yy}" x2="${W - m.right}" y2="${yy}" stroke="#e5e5e5"/>`,
      `<text x="${m.left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${label(v)}</text>`,
    );
  }
  for (let s = 0; s <= n; s += xStep) {
    const xx = x(s).toFixed(1);
    parts.push(
      `<line x1="${xx}" y1="${m.top + ph}" x2="${xx}" y2="${m.top + ph + 4}" stroke="#333"/>`,
      `<text x="${xx}" y="${m.top + ph + 16}" text-anchor="middle">${s}</text>`,
    );
  }
  parts.push(
    `<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}" stroke="#333"/>`,
    `<line x1="${m.left}" y1="${m.top + ph}" x2="${W - m.right}" y2="${m.top + ph}" stroke="#333"/>`,
    `<text x="${m.left + pw / 2}" y="${H - 8}" text-anchor="middle">step</text>`,
    `<text x="14" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 14 ${m.top + ph / 2})">loss (nats/token)</text>`,
  );
  if (points.length > 0)
    parts.push(`<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="${points.join(' ')}"/>`);
  if (extra.length > 0) {
    const yy = y(extra[0]).toFixed(1);
    parts.push(
      `<line x1="${m.left}" y1="${yy}" x2="${W - m.right}" y2="${yy}" stroke="#dc2626" stroke-dasharray="4 3"/>`,
      `<text x="${W - m.right - 4}" y="${Number(yy) - 6}" text-anchor="end" fill="#dc2626">eval ${extra[0].toFixed(3)}</text>`,
    );
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

export interface ModelCardInput {
  /** How the weights are stored: float32 model.safetensors, or int8 model.q8_0.gguf. */
  weightsFormat?: 'f32' | 'q8_0';
  preset: string;
  config: GPTConfig;
  hyper: HyperParams;
  parameters: number;
  trained: boolean;
  seed: number;
  dataFile: string;
  corpusSha256: string;
  corpusLines: number;
  corpusTokens: number;
  evalLoss: number | null;
  evalRestrictedLoss: number | null;
  trainingVocabSize: number | null;
  steps: number;
  wallTimeS: number;
  tokensPerS: number;
  finalTrainLoss: number | null;
  trainerVersion: string;
}

/** The model directory's README.md: what the model is, how it was made, how well it does, how to use it. */
export function modelCard(c: ModelCardInput): string {
  const h = c.hyper;
  const lines: string[] = [];
  lines.push(
    '# tiny-llm model',
    '',
    c.trained
      ? `A ${c.config.nLayer}-layer GPT-2 (${c.parameters.toLocaleString('en-US')} parameters) trained from scratch in TypeScript by \`tiny-llm create-model --train --preset ${c.preset}\` on this project's own corpus.`
      : `A randomly initialised GPT-2 (${c.parameters.toLocaleString('en-US')} parameters) written by \`tiny-llm create-model --preset ${c.preset}\` without training: it produces random text.`,
    c.weightsFormat === 'q8_0'
      ? 'It is a Hugging Face `GPT2LMHeadModel` directory whose weights are stored as int8 in `model.q8_0.gguf` (written with `--quantize q8_0`: Q8_0 blocks of 32 int8 with one f16 scale; norms, biases and positions float32), which this project serves as it is and llama.cpp loads directly.'
      : 'It is a Hugging Face `GPT2LMHeadModel` directory: `transformers`, this project and (after `tiny-llm export --format gguf`) llama.cpp can load it.',
    '',
    '## Configuration',
    '',
    '| field | value |',
    '| --- | --- |',
    `| vocabulary | ${c.config.vocabSize} (GPT-2 byte-level BPE, \`<|endoftext|>\` = ${c.config.eosTokenId}) |`,
    `| context (n_positions) | ${c.config.nPositions} |`,
    `| n_embd / n_layer / n_head | ${c.config.nEmbd} / ${c.config.nLayer} / ${c.config.nHead} |`,
    `| parameters | ${c.parameters} (LM head tied to the token embedding) |`,
    `| preset / seed | ${c.preset} / ${c.seed} |`,
    '',
  );
  if (c.trained) {
    lines.push(
      '## Training',
      '',
      `- Data: \`${c.dataFile}\` (${c.corpusLines} lines, sha256 \`${c.corpusSha256}\`), ${c.corpusTokens} training tokens.`,
      h.data === 'windows'
        ? `- Blocks separated by blank lines, each followed by \`<|endoftext|>\`${h.systemPromptInDialogues ? '; dialogue blocks start with the system prompt, as the chat template does' : ''}; batches of ${h.batchSize} random windows of ${h.seqLen} tokens, ${c.steps} steps.`
        : `- The original recipe: each line one sample truncated to ${h.seqLen} tokens, padded with EOS to the batch's longest (padding counted in the loss), batch ${h.batchSize}, ${h.epochs} epochs reshuffled with the seed (${c.steps} steps).`,
      `- AdamW lr ${h.lr} (${h.schedule === 'cosine' ? `${h.warmup} warmup steps, cosine decay to ${h.lr * h.minLrRatio}` : 'constant'}), betas (${h.beta1}, ${h.beta2}), eps ${h.eps}, weight decay ${h.weightDecay}${h.weightDecay > 0 && h.decayMatricesOnly ? ' on weight matrices and embeddings only (not biases or LayerNorm)' : ''}, gradient clip ${h.gradClip || 'off'}, dropout ${h.dropout.embd}/${h.dropout.attn}/${h.dropout.resid} (embd/attn/resid).`,
    );
    if (c.trainingVocabSize !== null) {
      lines.push(
        `- Training speed-up: the softmax during training ran over the corpus's own ${c.trainingVocabSize} token ids (EOS included) plus one column standing for the other ${c.config.vocabSize - c.trainingVocabSize} tokens as if their logits were 0 (log of their count), instead of all ${c.config.vocabSize} logits. The model is still a full GPT-2: evaluation and serving use the full softmax. The unused tokens' embeddings keep their small initial values, so the full-vocabulary loss ends only slightly above the corpus-only one (both measured below).`,
      );
    }
    lines.push(
      `- ${c.steps} steps in ${c.wallTimeS.toFixed(1)} s (${Math.round(c.tokensPerS)} tokens/s), trainer version ${c.trainerVersion}.`,
      '',
      '## Quality',
      '',
      `- Per-token loss on the corpus, as \`tiny-llm eval\` computes it (each line on its own, full vocabulary): **${c.evalLoss === null ? 'n/a' : c.evalLoss.toFixed(4)} nats**${c.evalRestrictedLoss !== null ? `; with the softmax restricted to the training vocabulary: ${c.evalRestrictedLoss.toFixed(4)} nats` : ''}.`,
      c.finalTrainLoss === null
        ? ''
        : `- Mean training loss of the last steps: ${c.finalTrainLoss.toFixed(4)} nats.`,
      "- The loss curve is in `loss-curve.svg`, every step's loss in `training.json`.",
      '',
    );
  }
  lines.push(
    '## Use',
    '',
    '```sh',
    'npx tiny-llm generate --model-dir model --prompt "$(cat data/system_prompt.txt)',
    'User: What does the scan gate do?',
    'Bot:" --max-new-tokens 48',
    'npx tiny-llm serve --model-dir model   # OpenAI-compatible API and chat page',
    '```',
    '',
    'Prompts follow the chat template `{system}\\nUser: {question}\\nBot:`; a reply ends at the next `User:` line or `<|endoftext|>`.',
    '',
    '## Limitations',
    '',
    '- Tiny and trained on a few thousand tokens: it recalls and recombines its corpus; it does not know anything else, and questions far from the corpus get fluent-looking but wrong answers.',
    '- No safety tuning, no factual guarantees; English only.',
    '- Made to demonstrate the build → scan → deploy → verify pipeline and a GPT in readable TypeScript, not for real use.',
    '',
  );
  return lines.filter((l, i, a) => !(l === '' && a[i - 1] === '')).join('\n');
}
