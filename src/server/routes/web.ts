// The chat page: web/index.html at `/`, the bundle (dist/web) and stylesheet (web) under /static/.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { sendError } from '../plugins/error-handler.js';

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};
/** Plain file names only: no directories, no dot files, so nothing outside the two folders can be named. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$/;

async function readFirst(paths: string[]): Promise<Buffer | null> {
  for (const p of paths) {
    try {
      return await readFile(p);
    } catch {}
  }
  return null;
}

const NOT_BUILT =
  'The chat page is not built yet: run `npm run build` (it bundles web/ into dist/web/), then reload this page. ' +
  'The API works already: POST /v1/chat/completions, POST /generate, GET /health.';

export async function webRoutes(app: FastifyInstance, options: { root: string }): Promise<void> {
  const bundleDir = path.join(options.root, 'dist', 'web');
  const sourceDir = path.join(options.root, 'web');

  app.get('/', async (_request, reply) => {
    const [html, bundle] = await Promise.all([
      readFirst([path.join(sourceDir, 'index.html')]),
      readFirst([path.join(bundleDir, 'app.js')]),
    ]);
    if (!html || !bundle) {
      return sendError(
        reply.header('cache-control', 'no-store'),
        new ApiError(503, NOT_BUILT, 'server_error', null, 'page_not_built'),
      );
    }
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(html);
  });

  app.get<{ Params: { file: string } }>('/static/:file', async (request, reply) => {
    const file = request.params.file;
    const type = CONTENT_TYPES[path.extname(file)];
    const body =
      SAFE_NAME.test(file) && type
        ? await readFirst([path.join(bundleDir, file), path.join(sourceDir, file)])
        : null;
    if (!body || !type) {
      return sendError(
        reply,
        new ApiError(404, `No static file '${file.slice(0, 100)}'.`, 'not_found_error', null, 'not_found'),
      );
    }
    return reply.type(type).header('cache-control', 'public, max-age=86400').send(body);
  });
}
