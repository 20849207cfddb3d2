// Reads a streamed /v1/chat/completions reply as it arrives: when the first content delta came and whether it ended.
import { SseParser } from '../../web/src/sse.js';

/** Whether one SSE data payload is a chat chunk carrying non-empty `delta.content`. */
export function hasContent(data: string): boolean {
  if (data === '[DONE]') return false;
  let chunk: unknown;
  try {
    chunk = JSON.parse(data);
  } catch {
    throw new Error(`a stream event is not JSON: ${data.slice(0, 80)}`);
  }
  const choices = (chunk as { choices?: { delta?: { content?: unknown } }[] }).choices;
  const content = Array.isArray(choices) ? choices[0]?.delta?.content : undefined;
  return typeof content === 'string' && content.length > 0;
}

/** Feeds text chunks with their arrival time; remembers the first content delta's time and the [DONE] event. */
export class ChatStreamTimer {
  private parser = new SseParser();
  /** Arrival time of the chunk holding the first non-empty content delta, or null so far. */
  firstContentAt: number | null = null;
  done = false;

  push(text: string, at: number): void {
    for (const data of this.parser.push(text)) {
      if (data === '[DONE]') this.done = true;
      else if (this.firstContentAt === null && hasContent(data)) this.firstContentAt = at;
    }
  }
}
