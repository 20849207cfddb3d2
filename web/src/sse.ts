// Incremental parser for server-sent events: turns arbitrary text chunks into complete `data:` payloads.

/**
 * Feeds decoded text in any chunking; `push` returns the data of every event completed by that chunk.
 * Events end at a blank line; several `data:` lines in one event join with "\n"; comments and other
 * fields (`event:`, `id:`, `retry:`) are ignored because the chat API only uses `data:`.
 */
export class SseParser {
  private buffer = '';
  private dataLines: string[] = [];

  push(chunk: string): string[] {
    this.buffer += chunk;
    const events: string[] = [];
    let newline = this.buffer.search(/\r\n|\r|\n/);
    while (newline >= 0) {
      // A lone "\r" at the very end may be the first half of "\r\n": wait for more text.
      if (this.buffer[newline] === '\r' && newline === this.buffer.length - 1) break;
      const width = this.buffer.startsWith('\r\n', newline) ? 2 : 1;
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + width);
      this.takeLine(line, events);
      newline = this.buffer.search(/\r\n|\r|\n/);
    }
    return events;
  }

  /**
   * Ends the stream and returns any event completed by a trailing "\r" held back by `push`; an event left
   * without its closing blank line is dropped, as the SSE spec says.
   */
  end(): string[] {
    const events: string[] = [];
    if (this.buffer.endsWith('\r')) this.takeLine(this.buffer.slice(0, -1), events);
    this.buffer = '';
    this.dataLines = [];
    return events;
  }

  private takeLine(line: string, events: string[]): void {
    if (line === '') {
      if (this.dataLines.length > 0) events.push(this.dataLines.join('\n'));
      this.dataLines = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== 'data') return;
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.dataLines.push(value);
  }
}
