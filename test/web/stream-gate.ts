// A proxy in front of the app that hands a chat stream to the page one event at a time, each only once the
// page shows the text so far: how often the reply visibly grows is then set by the stream, not by timing.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StreamGate {
  url: string;
  /** The shown text lengths waited for in the last chat stream, one per event that added text. */
  steps: number[];
  /** The first one the page did not show before the wait ran out (the rest then goes through unheld). */
  misses: number[];
  close(): Promise<void>;
}

// Hop-by-hop and encoding headers: fetch has already decoded the body, and the proxy frames its own reply.
const DROPPED = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'content-encoding',
]);

function deltaText(event: string): string {
  let text = '';
  for (const line of event.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const chunk = JSON.parse(line.slice(6)) as { choices?: { delta?: { content?: unknown } }[] };
    const content = chunk.choices?.[0]?.delta?.content;
    if (typeof content === 'string') text += content;
  }
  return text;
}

/**
 * Forwards every request to `upstream`. A chat completion's event stream is passed on event by event; after
 * each event that adds text, it waits for `shows(length)` (the page shows that many characters; the page
 * hides the reply's leading blanks, and so does the count) before sending the next.
 */
export async function startStreamGate(
  upstream: string,
  shows: (length: number) => Promise<boolean>,
): Promise<StreamGate> {
  const server = createServer(async (req, res) => {
    try {
      const body: Buffer[] = [];
      for await (const chunk of req) body.push(chunk as Buffer);
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (typeof value === 'string' && name !== 'host' && !DROPPED.has(name)) headers[name] = value;
      }
      const reply = await fetch(`${upstream}${req.url}`, {
        method: req.method,
        headers,
        body: body.length > 0 ? Buffer.concat(body) : undefined,
        redirect: 'manual',
      });
      const out: Record<string, string> = {};
      reply.headers.forEach((value, name) => {
        if (!DROPPED.has(name)) out[name] = value;
      });
      res.writeHead(reply.status, out);
      const streamed = /text\/event-stream/.test(reply.headers.get('content-type') ?? '');
      if (!streamed || reply.body === null) {
        res.end(Buffer.from(await reply.arrayBuffer()));
        return;
      }
      gate.steps = [];
      gate.misses = [];
      const decoder = new TextDecoder();
      let pending = '';
      let raw = '';
      const reader = reply.body.getReader();
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        pending += decoder.decode(read.value, { stream: true });
        for (let end = pending.indexOf('\n\n'); end !== -1; end = pending.indexOf('\n\n')) {
          const event = pending.slice(0, end + 2);
          pending = pending.slice(end + 2);
          res.write(event);
          raw += deltaText(event);
          const length = raw.trimStart().length;
          if (length > (gate.steps.at(-1) ?? 0)) {
            gate.steps.push(length);
            if (gate.misses.length === 0 && !(await shows(length))) gate.misses.push(length);
          }
        }
      }
      res.end(pending);
    } catch (error) {
      res.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const gate: StreamGate = {
    url: `http://127.0.0.1:${port}`,
    steps: [],
    misses: [],
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return gate;
}
