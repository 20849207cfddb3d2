// A loopback stand-in for the Hugging Face Hub: the URL layout, redirects and headers @huggingface/hub and
// huggingface_hub rely on (model info by revision, tree listing, resolve with LFS redirects to a CDN that
// answers range requests, ETag / X-Repo-Commit / X-Linked-Etag / X-Linked-Size), tokens, and faults.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRepo {
  /** 40 hex digits. */
  commit: string;
  files: Map<string, Buffer>;
  /** Branches and tags → commit (main is always there). */
  refs?: Record<string, string>;
  /** Token required (Bearer) to read the repo; with gated, a valid token still gets 403 unless listed. */
  private?: boolean;
  gated?: boolean;
  /** The summary of config.json the model-info API reports (real Hub: model_type and architectures). */
  config?: Record<string, unknown>;
}

/** What goes wrong when a file's content is served (from the CDN for LFS files, from resolve otherwise). */
export interface Fault {
  /** Send this many bytes, then keep the connection open without sending more. */
  stallAfter?: number;
  /** Announce the whole length, send this many bytes, then close the connection. */
  truncateAt?: number;
  /** Answer range requests with the whole file (200). */
  ignoreRange?: boolean;
  /** Flip one byte of what is served. */
  corrupt?: boolean;
  /** Answer the file's content with this status. */
  status?: number;
  /** Apply to this many requests, then serve normally (default: every request). */
  times?: number;
}

export interface FakeHub {
  url: string;
  repos: Map<string, FakeRepo>;
  /** Valid tokens → the repos they may read when gated or private (empty list: all). */
  tokens: Map<string, string[]>;
  faults: Map<string, Fault>;
  requests: Array<{ method: string; path: string; range: string | null; auth: string | null }>;
  close(): Promise<void>;
}

/** Files above this size are stored in LFS, like the Hub's .gitattributes does for weights. */
const LFS_MIN = 10_000;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const isLfs = (name: string, b: Buffer) => b.length >= LFS_MIN || name.endsWith('.safetensors');

export async function startFakeHub(): Promise<FakeHub> {
  const repos = new Map<string, FakeRepo>();
  const tokens = new Map<string, string[]>();
  const faults = new Map<string, Fault>();
  const requests: FakeHub['requests'] = [];
  const stalled = new Set<http.ServerResponse>();

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const path = decodeURIComponent(url.pathname);
    const auth = req.headers.authorization ?? null;
    requests.push({ method: req.method ?? 'GET', path, range: req.headers.range ?? null, auth });
    const json = (status: number, value: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
      res.end(JSON.stringify(value));
    };
    const error = (status: number, code: string, message: string) =>
      json(status, { error: message }, { 'x-error-code': code, 'x-error-message': message });

    // Which repo a path names: ORG/NAME or a bare NAME, followed by the route.
    const findRepo = (rest: string): [string, FakeRepo, string] | null => {
      for (const [name, repo] of repos)
        if (rest === name || rest.startsWith(`${name}/`)) return [name, repo, rest.slice(name.length)];
      return null;
    };
    /** null when access is allowed, else it has answered. */
    const denied = (name: string, repo: FakeRepo): boolean => {
      const token = auth?.replace(/^Bearer /, '') ?? null;
      if (token !== null && !tokens.has(token)) {
        error(401, 'InvalidCredentials', 'Invalid credentials in Authorization header');
        return true;
      }
      if (!repo.private && !repo.gated) return false;
      if (token === null) {
        error(
          401,
          'GatedRepo',
          `Access to model ${name} is restricted. You must have access to it and be authenticated.`,
        );
        return true;
      }
      const allowed = tokens.get(token)!;
      if (allowed.length > 0 && !allowed.includes(name)) {
        error(
          403,
          'GatedRepo',
          `Access to model ${name} is restricted and you are not in the authorized list.`,
        );
        return true;
      }
      return false;
    };
    const commitOf = (repo: FakeRepo, rev: string): string | null => {
      if (rev === repo.commit || rev === 'main' || rev === 'HEAD') return repo.commit;
      const refs = repo.refs ?? {};
      return refs[rev] ?? (Object.values(refs).includes(rev) ? rev : null);
    };

    // GET /api/models/{repo}/revision/{rev} and /api/models/{repo}/tree/{rev}[/{path}]
    if (path.startsWith('/api/models/')) {
      const found = findRepo(path.slice('/api/models/'.length));
      if (!found) return error(401, 'RepoNotFound', 'Repository not found');
      const [name, repo, route] = found;
      if (denied(name, repo)) return;
      const m = /^\/(revision|tree)\/([^/]+)(?:\/(.*))?$/.exec(route);
      if (!m) return error(404, 'EntryNotFound', `no route ${route}`);
      const commit = commitOf(repo, m[2]);
      if (!commit) return error(404, 'RevisionNotFound', `Invalid rev id: ${m[2]}`);
      if (m[1] === 'revision') {
        return json(200, {
          _id: `id-${name}`,
          id: name,
          sha: commit,
          private: repo.private === true,
          gated: repo.gated ? 'manual' : false,
          downloads: 0,
          likes: 0,
          lastModified: '2024-01-01T00:00:00.000Z',
          pipeline_tag: 'text-generation',
          config: repo.config ?? { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] },
          siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })),
        });
      }
      return json(
        200,
        [...repo.files].map(([p, b]) => ({
          type: 'file',
          path: p,
          size: b.length,
          oid: isLfs(p, b)
            ? gitOid(
                Buffer.from(
                  `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(b)}\nsize ${b.length}\n`,
                ),
              )
            : gitOid(b),
          ...(isLfs(p, b) ? { lfs: { oid: sha256(b), size: b.length, pointerSize: 134 } } : {}),
        })),
      );
    }

    // GET /cdn-lfs/{repo}/{sha256}: the CDN an LFS resolve redirects to.
    const cdn = /^\/cdn-lfs\/(.+)\/([0-9a-f]{64})$/.exec(path);
    if (cdn) {
      const repo = repos.get(cdn[1]);
      const entry = repo && [...repo.files].find(([, b]) => sha256(b) === cdn[2]);
      if (!entry) return error(404, 'EntryNotFound', 'no such object');
      return serveContent(req, res, entry[0], entry[1], { etag: `"${cdn[2]}"` });
    }

    // GET|HEAD /{repo}/resolve/{rev}/{file}
    const found = findRepo(path.slice(1));
    if (!found) return error(401, 'RepoNotFound', 'Repository not found');
    const [name, repo, route] = found;
    const m = /^\/resolve\/([^/]+)\/(.+)$/.exec(route);
    if (!m) return error(404, 'EntryNotFound', `no route ${route}`);
    if (denied(name, repo)) return;
    const commit = commitOf(repo, m[1]);
    if (!commit) return error(404, 'RevisionNotFound', `Invalid rev id: ${m[1]}`);
    const file = m[2];
    const data = repo.files.get(file);
    if (!data) return error(404, 'EntryNotFound', `${file} does not exist on "${m[1]}"`);
    const common = { 'x-repo-commit': commit, 'accept-ranges': 'bytes' };
    if (isLfs(file, data)) {
      res.writeHead(302, {
        ...common,
        location: `/cdn-lfs/${name}/${sha256(data)}`,
        etag: `"${gitOid(data)}"`,
        'x-linked-etag': `"${sha256(data)}"`,
        'x-linked-size': String(data.length),
        'content-length': '0',
      });
      return res.end();
    }
    return serveContent(req, res, file, data, { ...common, etag: `"${gitOid(data)}"` });
  });

  /** Serves a file's bytes with range support, applying its fault if one is set. */
  function serveContent(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    file: string,
    data: Buffer,
    headers: Record<string, string>,
  ): void {
    let fault = faults.get(file);
    // The Range: bytes=0-0 probes that learn a file's size are never faulted.
    const probe = req.headers.range === 'bytes=0-0';
    if (fault && !probe) {
      if (fault.times !== undefined) {
        fault.times--;
        if (fault.times <= 0) faults.delete(file);
      }
    } else fault = undefined;
    if (fault?.status) {
      res.writeHead(fault.status, { 'content-type': 'text/plain' });
      return void res.end(`fault ${fault.status}`);
    }
    let body = data;
    if (fault?.corrupt) {
      body = Buffer.from(data);
      body[body.length >> 1] ^= 0xff;
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let status = 200;
    const out: Record<string, string> = { ...headers, 'content-type': 'application/octet-stream' };
    if (range && !fault?.ignoreRange) {
      const start = Number(range[1]);
      const end = range[2] === '' ? data.length - 1 : Math.min(Number(range[2]), data.length - 1);
      if (start >= data.length) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` });
        return void res.end();
      }
      status = 206;
      out['content-range'] = `bytes ${start}-${end}/${data.length}`;
      body = body.subarray(start, end + 1);
    }
    out['content-length'] = String(body.length);
    res.writeHead(status, out);
    if (req.method === 'HEAD') return void res.end();
    if (fault?.stallAfter !== undefined) {
      res.write(body.subarray(0, fault.stallAfter));
      stalled.add(res);
      return;
    }
    if (fault?.truncateAt !== undefined) {
      res.write(body.subarray(0, fault.truncateAt), () => res.destroy());
      return;
    }
    res.end(body);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    repos,
    tokens,
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
