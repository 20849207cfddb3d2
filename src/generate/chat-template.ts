// The chat format the model is trained on and served with: "{system}\nUser: {prompt}\nBot:".

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** A bot turn ends where the model starts the next user turn. */
export const CHAT_STOP = ['\nUser:'] as const;

/** The original project's single-turn template. */
export function formatPrompt(system: string, prompt: string): string {
  return `${system}\nUser: ${prompt}\nBot:`;
}

/**
 * Maps OpenAI-style messages onto the template: system messages join the system prompt (the request's own
 * system text replaces the default), user and assistant turns alternate as "User:"/"Bot:" lines, and the
 * text ends with "Bot:" so the model writes the next reply.
 */
export function formatChat(defaultSystem: string, messages: readonly ChatMessage[]): string {
  const systems = messages.filter((m) => m.role === 'system').map((m) => m.content.trim());
  const system = systems.length > 0 ? systems.join('\n') : defaultSystem;
  const turns = messages
    .filter((m) => m.role !== 'system')
    .map((m) => (m.role === 'user' ? `User: ${oneLine(m.content)}` : `Bot: ${oneLine(m.content)}`));
  return `${system}\n${turns.join('\n')}\nBot:`;
}

/** Cleans a reply for display: trims spaces around it. */
export function cleanReply(text: string): string {
  return text.trim();
}

/** Newlines inside a turn would read as the start of another turn; fold them into spaces. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
