// The chat format the model is trained on and served with: "{system}\nUser: {prompt}\nBot:".
// Messages keep their own lines (code blocks survive), but no line of a message can open a turn: every
// transform here is a single pass over the text, so a hostile message costs time linear in its length.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The markers that open a turn at the start of a line. */
export const TURN_MARKERS = ['User:', 'Bot:'] as const;

/** A bot turn ends where the model starts the next user turn. */
export const CHAT_STOP = ['\nUser:'] as const;

/** The original project's single-turn template. */
export function formatPrompt(system: string, prompt: string): string {
  return `${system}\nUser: ${prompt}\nBot:`;
}

/**
 * Maps OpenAI-style messages onto the template: system messages join the system prompt (the request's own
 * system text replaces the default), user and assistant turns follow as "User:"/"Bot:" turns, and the
 * text ends with "Bot:" so the model writes the next reply. See messageText for what a message may hold.
 */
export function formatChat(defaultSystem: string, messages: readonly ChatMessage[]): string {
  const systems = messages.filter((m) => m.role === 'system').map((m) => messageText(m.content));
  const system = systems.length > 0 ? systems.join('\n') : defaultSystem;
  const turns = messages
    .filter((m) => m.role !== 'system')
    .map((m) => `${m.role === 'user' ? 'User:' : 'Bot:'} ${messageText(m.content)}`);
  return `${system}\n${turns.join('\n')}\nBot:`;
}

/** Cleans a reply for display: trims spaces around it. */
export function cleanReply(text: string): string {
  return text.trim();
}

/**
 * A message as it enters the template: line breaks normalised to "\n" (CRLF and lone CR), surrounding
 * whitespace trimmed, inner lines and indentation kept. A line that would read as a turn marker —
 * "User:" or "Bot:" after optional spaces or tabs, in any letter case, with optional spaces before the
 * colon — is indented by one more space, so the only turns in the prompt are the template's own.
 */
export function messageText(content: string): string {
  const text = content.trim();
  // Most messages need no change: find the first place that does before copying anything.
  let first = -1;
  for (let i = 0, lineStart = true; i < text.length && first < 0; i++) {
    const c = text.charCodeAt(i);
    if (c === 13) first = i;
    else if (c === 10) lineStart = true;
    else if (lineStart) {
      lineStart = false;
      if (opensTurn(text, i)) first = i;
    }
  }
  if (first < 0) return text;
  // Copy code units into one buffer (each line gains at most one space) and decode it once.
  const out = new Uint16Array(2 * text.length + 1);
  let n = 0;
  for (let i = 0; i < first; i++) out[n++] = text.charCodeAt(i);
  let lineStart = first === 0 || text.charCodeAt(first - 1) === 10;
  for (let i = first; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c === 13) {
      if (text.charCodeAt(i + 1) === 10) i++;
      c = 10;
    }
    if (c === 10) {
      out[n++] = 10;
      lineStart = true;
      continue;
    }
    if (lineStart) {
      lineStart = false;
      if (opensTurn(text, i)) out[n++] = 32;
    }
    out[n++] = c;
  }
  return UTF16.decode(out.subarray(0, n));
}

/** Decodes the copied code units back into a string (a lone surrogate becomes U+FFFD, as the tokenizer reads it anyway). */
const UTF16 = new TextDecoder('utf-16le');

/** Lower-case names of the turn markers, without their colon. */
const MARKER_NAMES = TURN_MARKERS.map((m) => m.slice(0, -1).toLowerCase());

/**
 * Whether the line starting at `at` begins (after spaces and tabs) with a turn marker's name and colon,
 * in any letter case. Compares character codes in place: nothing is allocated per line.
 */
function opensTurn(text: string, at: number): boolean {
  let i = at;
  while (isBlank(text.charCodeAt(i))) i++;
  for (const name of MARKER_NAMES) {
    let k = 0;
    while (k < name.length && (text.charCodeAt(i + k) | 0x20) === name.charCodeAt(k)) k++;
    if (k < name.length) continue;
    let j = i + k;
    while (isBlank(text.charCodeAt(j))) j++;
    if (text.charCodeAt(j) === 58 /* : */) return true;
  }
  return false;
}

function isBlank(c: number): boolean {
  return c === 32 || c === 9;
}
