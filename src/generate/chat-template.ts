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
  let out = '';
  let from = 0;
  let lineStart = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 13 /* \r */) {
      out += `${text.slice(from, i)}\n`;
      if (text.charCodeAt(i + 1) === 10) i++;
      from = i + 1;
      lineStart = true;
      continue;
    }
    if (c === 10 /* \n */) {
      lineStart = true;
      continue;
    }
    if (lineStart) {
      lineStart = false;
      if (opensTurn(text, i)) {
        out += `${text.slice(from, i)} `;
        from = i;
      }
    }
  }
  return out + text.slice(from);
}

/**
 * Whether the line starting at `at` begins (after spaces and tabs) with a turn marker's name and colon.
 * Reads at most a few characters past the indentation, and the indentation is read once per line.
 */
function opensTurn(text: string, at: number): boolean {
  let i = at;
  while (i < text.length && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  for (const marker of TURN_MARKERS) {
    const name = marker.slice(0, -1);
    if (text.slice(i, i + name.length).toLowerCase() !== name.toLowerCase()) continue;
    let j = i + name.length;
    while (j < text.length && (text.charCodeAt(j) === 32 || text.charCodeAt(j) === 9)) j++;
    if (text.charCodeAt(j) === 58 /* : */) return true;
  }
  return false;
}
