// A minimal Cloud Storage JSON API on 127.0.0.1 (objects in memory): multipart upload, listing by prefix and
// delimiter, metadata and media download by generation, with the CRC32C/MD5 the real service reports.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** What goes wrong when an object's media is served. */
export interface GcsFault {
  /** Flip one byte of what is served (the listed CRC32C/MD5 stay those of the stored object). */
  corrupt?: boolean;
  /** Send this many bytes, then nothing more. */
  stallAfter?: number;
  /** Answer the media request only once this settles (a download the test holds, then lets go). */
  hold?: Promise<void>;
}

/** The service on 127.0.0.1; `objects` is keyed BUCKET/NAME, `faults` likewise. */
export async function startFakeGcs() {
  const objects = new Map<string, Buffer>();
  const faults = new Map<string, GcsFault>();
  const requests: string[] = [];
  const stalled = new Set<http.ServerResponse>();
  // One generation number per stored version, as Cloud Storage gives.
  const generations = new WeakMap<Buffer, number>();
  let nextGeneration = 1_700_000_000_000_000;
  const generationOf = (d: Buffer) => {
    if (!generations.has(d)) generations.set(d, nextGeneration++);
    return generations.get(d)!;
  };
  const table = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32c = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const byte of buf) c = table[(c ^ byte) & 0xff] ^ (c >>> 8);
    const out = Buffer.alloc(4);
    out.writeUInt32BE((c ^ 0xffffffff) >>> 0);
    return out.toString('base64');
  };
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('base64');
  const meta = (bucket: string, name: string, d: Buffer) => ({
    kind: 'storage#object',
    bucket,
    name,
    size: String(d.length),
    md5Hash: md5(d),
    crc32c: crc32c(d),
    generation: String(generationOf(d)),
  });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      requests.push(`${req.method} ${url.pathname}`);
      const send = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
      if (upload && req.method === 'POST' && url.searchParams.get('uploadType') === 'multipart') {
        const boundary = /boundary="?([^";]+)"?/.exec(req.headers['content-type'] ?? '')?.[1];
        if (!boundary) return send(400, { error: { code: 400, message: 'no multipart boundary' } });
        const text = body.toString('latin1');
        const parts = text.split(`--${boundary}`).slice(1, -1);
        const [metaPart, mediaPart] = parts;
        const metadata = JSON.parse(metaPart.slice(metaPart.indexOf('\r\n\r\n') + 4).trim());
        const media = Buffer.from(mediaPart.slice(mediaPart.indexOf('\r\n\r\n') + 4, -2), 'latin1');
        const name = url.searchParams.get('name') ?? metadata.name;
        objects.set(`${upload[1]}/${name}`, media);
        return send(200, meta(upload[1], name, media));
      }
      const list = /^(?:\/storage\/v1)?\/b\/([^/]+)\/o\/?$/.exec(url.pathname);
      if (list && req.method === 'GET') {
        const prefix = url.searchParams.get('prefix') ?? '';
        const delimiter = url.searchParams.get('delimiter');
        const items = [];
        const prefixes = new Set<string>();
        for (const [key, data] of objects) {
          if (!key.startsWith(`${list[1]}/${prefix}`)) continue;
          const name = key.slice(list[1].length + 1);
          const rest = name.slice(prefix.length);
          if (delimiter && rest.includes(delimiter)) {
            prefixes.add(prefix + rest.slice(0, rest.indexOf(delimiter) + 1));
            continue;
          }
          items.push(meta(list[1], name, data));
        }
        return send(200, { kind: 'storage#objects', items, prefixes: [...prefixes] });
      }
      const object = /^(?:\/storage\/v1)?\/b\/([^/]+)\/o\/(.+)$/.exec(url.pathname);
      if (object && req.method === 'GET') {
        const name = decodeURIComponent(object[2]);
        const data = objects.get(`${object[1]}/${name}`);
        if (!data)
          return send(404, { error: { code: 404, message: `No such object: ${object[1]}/${name}` } });
        const generation = url.searchParams.get('generation');
        if (generation !== null && generation !== String(generationOf(data)))
          return send(404, {
            error: { code: 404, message: `No such object: ${object[1]}/${name}#${generation}` },
          });
        if (url.searchParams.get('alt') !== 'media') return send(200, meta(object[1], name, data));
        const fault = faults.get(`${object[1]}/${name}`);
        if (fault?.hold) {
          stalled.add(res);
          fault.hold.then(() => {
            stalled.delete(res);
            if (!res.destroyed) serveMedia(res, data, fault);
          });
          return;
        }
        return serveMedia(res, data, fault);
      }
      send(501, {
        error: { code: 501, message: `fake GCS does not implement ${req.method} ${url.pathname}` },
      });
    });
  });
  /** Sends an object's media, with the fault asked for (a held request comes here once let go). */
  function serveMedia(res: http.ServerResponse, data: Buffer, fault: GcsFault | undefined): void {
    let served = data;
    if (fault?.corrupt) {
      served = Buffer.from(data);
      served[served.length >> 1] ^= 0xff;
    }
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': served.length,
      'x-goog-hash': `crc32c=${crc32c(served)},md5=${md5(served)}`,
    });
    if (fault?.stallAfter !== undefined) {
      res.write(served.subarray(0, fault.stallAfter));
      stalled.add(res);
      return;
    }
    res.end(served);
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    objects,
    faults,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const r of stalled) r.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
