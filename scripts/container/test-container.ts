// Proves docker/Dockerfile on a machine without a Docker engine: builds it with buildah on local stand-ins of its
// base images (unchanged but for the FROM lines' digest pins, which no stand-in can match), then runs the image's
// own command and checks the live service over loopback.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../lib/free-port.js';
import { dockerfileForStandins } from './standin-dockerfile.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const cacheDir = process.env.STANDIN_CACHE ?? '/var/tmp/tiny-llm-standins';
const storage = [
  '--storage-driver',
  'vfs',
  '--root',
  join(cacheDir, 'storage'),
  '--runroot',
  join(cacheDir, 'runroot'),
];
const imageTag = 'localhost/tiny-llm:container-test';
const serviceUid = 65532;
const readyTimeoutMs = 120_000;
const drainLimitMs = 10_000;

type ImageConfig = {
  User?: string;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[];
  WorkingDir?: string;
};
type ImageInspect = { OCIv1: { config: ImageConfig } };
/** What the image must serve: the preset trained in the build, or a directory of the build context. */
type ExpectedModel = { kind: 'trained' } | { kind: 'directory'; contextPath: string; parameters: number };

type TrainingReport = {
  trained?: boolean;
  steps?: number;
  final_loss?: number | null;
  wall_time_s?: number;
  started_at?: string;
};

function log(message: string): void {
  process.stdout.write(`container-test: ${message}\n`);
}

function fail(message: string): never {
  throw new Error(`container-test: ${message}`);
}

function check(condition: unknown, message: string): asserts condition {
  if (!condition) fail(message);
  log(`ok  ${message}`);
}

function buildah(args: string[]): string {
  return execFileSync('buildah', [...storage, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir || '.', name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

// When tools are missing, the first line printed is the command that installs them, ready to paste.
function requireTools(names: string[]): void {
  const missing = names.filter((name) => !onPath(name));
  if (missing.length === 0) return;
  const sudo = process.getuid?.() === 0 ? '' : 'sudo ';
  process.stdout.write(`${sudo}apt-get install -y ${missing.join(' ')}\n`);
  fail(
    `${missing.join(' and ')} ${missing.length === 1 ? 'is' : 'are'} not installed: the line above installs ` +
      `${missing.length === 1 ? 'it' : 'them'} on Debian or Ubuntu (.ci/run does)`,
  );
}

// Every process whose parent chain leads to rootPid (the buildah run we started).
function descendants(rootPid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
      parent.set(Number(entry), ppid);
    } catch {
      // The process ended while we looked.
    }
  }
  const found: number[] = [];
  for (const pid of parent.keys()) {
    let p = parent.get(pid);
    while (p !== undefined && p > 1) {
      if (p === rootPid) {
        found.push(pid);
        break;
      }
      p = parent.get(p);
    }
  }
  return found;
}

function processInfo(pid: number): { exe: string; uid: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return { exe: cmdline[0] ?? '', uid };
  } catch {
    return undefined;
  }
}

async function waitForExit(child: ChildProcess, ms: number): Promise<number | null | 'timeout'> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

async function get(base: string, path: string): Promise<Response> {
  return fetch(`${base}${path}`, { signal: AbortSignal.timeout(30_000) });
}

async function postJson(base: string, path: string, body: unknown): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
}

// Bytes of the files under a directory (apparent size, as they would be in a layer).
function diskBytes(dir: string): number {
  const out = execFileSync('du', ['-s', '--apparent-size', '--block-size=1', dir], { encoding: 'utf8' });
  return Number(out.split('\t')[0]);
}

// Static checks on the committed image's file system and configuration.
function inspectImage(
  buildStartedAt: number,
  expected: ExpectedModel,
): {
  command: string[];
  size: string;
  rootfsBytes: number;
  appBytes: number;
} {
  const inspect = JSON.parse(buildah(['inspect', '--type', 'image', imageTag])) as ImageInspect;
  const config = inspect.OCIv1.config;
  const user = config.User ?? '';
  check(
    user !== '' && !/^(0|root)(:|$)/.test(user),
    `image runs as a non-root user (USER ${JSON.stringify(user)})`,
  );
  const command = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
  check(command.length > 0, `the image has its own command: ${JSON.stringify(command)}`);

  const images = JSON.parse(buildah(['images', '--json', imageTag])) as { size?: string }[];
  const size = images[0]?.size ?? '?';
  let rootfsBytes = 0;
  let appBytes = 0;

  const ctr = buildah(['from', '--pull-never', imageTag]);
  try {
    const root = buildah(['mount', ctr]);
    rootfsBytes = diskBytes(root);
    appBytes = diskBytes(join(root, 'app'));
    for (const shell of ['bin/sh', 'usr/bin/sh', 'bin/bash', 'usr/bin/bash', 'bin/busybox']) {
      check(!existsSync(join(root, shell)), `no shell: /${shell} is absent`);
    }
    const model = join(root, 'app/model');
    const files =
      expected.kind === 'trained'
        ? ['config.json', 'generation_config.json', 'model.safetensors', 'training.json']
        : ['config.json', 'model.safetensors', 'source.json', 'README.md'];
    for (const file of files) {
      check(existsSync(join(model, file)), `model file /app/model/${file} is in the image`);
    }
    if (expected.kind === 'trained') checkTraining(model, buildStartedAt);
    else {
      const source = JSON.parse(readFileSync(join(model, 'source.json'), 'utf8')) as { uri?: string };
      check(
        source.uri === join('/app', expected.contextPath),
        `source.json names the build context's ${expected.contextPath} (${source.uri})`,
      );
      check(
        !existsSync(join(model, 'training.json')),
        'no training report: the checkpoint was not trained in this build',
      );
    }
    checkApp(root);
  } finally {
    buildah(['rm', ctr]);
  }
  return { command, size, rootfsBytes, appBytes };
}

/** The model was trained during this build and passed the Dockerfile's quality gate. */
function checkTraining(model: string, buildStartedAt: number): void {
  // model/ is never in the build context (.dockerignore), and the report dates the training run.
  const training = JSON.parse(readFileSync(join(model, 'training.json'), 'utf8')) as TrainingReport;
  const startedAt = Date.parse(training.started_at ?? '');
  check(
    training.trained === true &&
      (training.steps ?? 0) > 0 &&
      startedAt >= buildStartedAt - 1000 &&
      startedAt <= Date.now(),
    `the model was trained during this build: ${training.steps} steps in ${training.wall_time_s} s, started ${training.started_at}`,
  );
  const gate = Number(
    readFileSync(join(repoRoot, 'docker/Dockerfile'), 'utf8').match(/^ARG MAX_LOSS=(\S+)$/m)?.[1],
  );
  check(
    Number.isFinite(gate) && typeof training.final_loss === 'number' && training.final_loss <= gate,
    `the trained model passed the Dockerfile's quality gate: final loss ${training.final_loss} ≤ ${gate}`,
  );
}

/** No sources or dev dependencies in /app, and an SBOM of the production ones. */
function checkApp(root: string): void {
  check(!existsSync(join(root, 'app/src')), 'no TypeScript sources in the runtime image');
  check(
    !existsSync(join(root, 'app/node_modules/typescript')),
    'dev dependencies were pruned (no typescript)',
  );
  const sbom = JSON.parse(readFileSync(join(root, 'app/sbom.cdx.json'), 'utf8')) as {
    bomFormat?: string;
    components?: { name?: string }[];
  };
  const names = new Set((sbom.components ?? []).map((c) => c.name));
  check(
    sbom.bomFormat === 'CycloneDX' && names.has('fastify') && !names.has('typescript'),
    `CycloneDX SBOM lists the ${names.size} production components (fastify yes, typescript no)`,
  );
}

// Starts the image's own command, checks the service over loopback, then stops it with SIGTERM.
async function runImage(command: string[], expected: ExpectedModel): Promise<number> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const ctr = buildah(['from', '--pull-never', imageTag]);
  let child: ChildProcess | undefined;
  let output = '';
  try {
    const started = performance.now();
    child = spawn(
      'buildah',
      [
        ...storage,
        'run',
        '--isolation',
        'chroot',
        '--network',
        'host',
        '--env',
        `PORT=${port}`,
        ctr,
        '--',
        ...command,
      ],
      { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);

    let coldStartMs = -1;
    while (performance.now() - started < readyTimeoutMs) {
      if (child.exitCode !== null || child.signalCode !== null) {
        fail(`the container exited (${child.exitCode ?? child.signalCode}) before /ready:\n${output}`);
      }
      const ready = await get(base, '/ready').catch(() => undefined);
      if (ready?.status === 200) {
        coldStartMs = performance.now() - started;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    check(coldStartMs >= 0, `GET /ready answered 200 after ${(coldStartMs / 1000).toFixed(2)} s`);

    const nodes = descendants(child.pid ?? -1)
      .map((pid) => ({ pid, info: processInfo(pid) }))
      .filter((p) => p.info?.exe.endsWith('node'));
    check(nodes.length === 1, `one node process serves the container (pids ${nodes.map((n) => n.pid)})`);
    const node = nodes[0]!;
    check(node.info?.uid === serviceUid, `the server process runs as uid ${node.info?.uid} (nonroot)`);

    const health = await get(base, '/health');
    check(health.status === 200, `GET /health → ${health.status}`);

    // The model the build was asked for, as the pipeline's smoke test reads it.
    const info = await get(base, '/api/model');
    const about = (await info.json()) as {
      parameters?: number;
      source?: { kind?: string; uri?: string | null; preset?: string | null; description?: string };
    };
    const said = `GET /api/model → ${info.status}, ${about.parameters} parameters, source ${JSON.stringify(about.source?.description)}`;
    if (expected.kind === 'trained') {
      check(
        info.status === 200 && about.source?.kind === 'trained' && about.source.preset === 'default',
        said,
      );
    } else {
      check(
        info.status === 200 &&
          about.source?.kind === 'directory' &&
          about.source.uri === join('/app', expected.contextPath) &&
          about.parameters === expected.parameters,
        `${said} (expected ${expected.contextPath}, ${expected.parameters} parameters)`,
      );
    }

    const page = await get(base, '/');
    const html = await page.text();
    check(
      page.status === 200 && /text\/html/.test(page.headers.get('content-type') ?? '') && /<html/i.test(html),
      `GET / → ${page.status} ${page.headers.get('content-type')} (${html.length} bytes of HTML)`,
    );

    const bundle = await get(base, '/static/app.js');
    const bundleBytes = (await bundle.arrayBuffer()).byteLength;
    check(
      bundle.status === 200 &&
        /javascript/.test(bundle.headers.get('content-type') ?? '') &&
        bundleBytes > 1000,
      `GET /static/app.js → ${bundle.status} (${bundleBytes} bytes of the chat page bundle)`,
    );

    const generated = await postJson(base, '/generate', { prompt: 'What does the pipeline do?' });
    const genBody = (await generated.json()) as { response?: unknown };
    check(
      generated.status === 200 && typeof genBody.response === 'string',
      `POST /generate → ${generated.status} ${JSON.stringify(genBody).slice(0, 160)}`,
    );

    const stream = await postJson(base, '/v1/chat/completions', {
      model: 'tiny-llm',
      messages: [{ role: 'user', content: 'What is Cloud Run?' }],
      stream: true,
      max_tokens: 24,
    });
    const sse = await stream.text();
    const events = sse
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => line.slice(6));
    const chunks = events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e) as { choices?: unknown[] });
    const text = chunks
      .map((c) => (c.choices?.[0] as { delta?: { content?: string } } | undefined)?.delta?.content ?? '')
      .join('');
    check(
      stream.status === 200 &&
        /text\/event-stream/.test(stream.headers.get('content-type') ?? '') &&
        chunks.length > 0 &&
        events.at(-1) === '[DONE]',
      `streamed chat completion: ${chunks.length} chunks then [DONE] (${JSON.stringify(text.slice(0, 80))})`,
    );

    const metrics = await get(base, '/metrics');
    check(metrics.status === 200, `GET /metrics → ${metrics.status}`);

    // The image's build wrote the CLI bundle's code cache with its own Node: the start-up log says it was used.
    const startup = /start-up: ([^"\n]*)/.exec(output)?.[1] ?? 'no log line';
    check(startup.startsWith('CLI code cache used'), `start-up: ${startup}`);

    const stopAt = performance.now();
    process.kill(node.pid, 'SIGTERM');
    const code = await waitForExit(child, drainLimitMs);
    const drainMs = performance.now() - stopAt;
    check(code === 0, `SIGTERM: the container exited with ${code} after ${(drainMs / 1000).toFixed(2)} s`);
    return coldStartMs;
  } catch (error) {
    if (output) process.stdout.write(`--- container output (tail) ---\n${output}\n`);
    throw error;
  } finally {
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      process.kill(-child.pid, 'SIGKILL');
      await waitForExit(child, 5_000);
    }
    buildah(['rm', ctr]);
  }
}

function mb(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** Parameters of a safetensors file: the sum of its tensors' shapes (the header alone is read). */
function safetensorsParameters(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const size = Buffer.alloc(8);
    readSync(fd, size, 0, 8, 0);
    const header = Buffer.alloc(Number(size.readBigUInt64LE(0)));
    readSync(fd, header, 0, header.length, 8);
    const tensors = JSON.parse(header.toString('utf8')) as Record<string, { shape?: number[] }>;
    return Object.entries(tensors)
      .filter(([name]) => name !== '__metadata__')
      .reduce((sum, [, t]) => sum + (t.shape ?? []).reduce((a, b) => a * b, 1), 0);
  } finally {
    closeSync(fd);
  }
}

/** Builds docker/Dockerfile (pins removed for the stand-ins) with these build arguments; returns the seconds. */
function buildImage(buildArgs: string[]): number {
  const { text: standinDockerfile } = dockerfileForStandins(
    readFileSync(join(repoRoot, 'docker/Dockerfile'), 'utf8'),
  );
  const dockerfileDir = mkdtempSync(join(tmpdir(), 'tiny-llm-dockerfile-'));
  const dockerfile = join(dockerfileDir, 'Dockerfile');
  writeFileSync(dockerfile, standinDockerfile);
  const buildStarted = performance.now();
  try {
    execFileSync(
      'buildah',
      [
        ...storage,
        'bud',
        '--pull=never',
        '--isolation',
        'chroot',
        '--network',
        'host',
        '--layers=false',
        ...buildArgs,
        '-f',
        dockerfile,
        '-t',
        imageTag,
        '.',
      ],
      { cwd: repoRoot, stdio: 'inherit' },
    );
  } finally {
    rmSync(dockerfileDir, { recursive: true, force: true });
  }
  return (performance.now() - buildStarted) / 1000;
}

/** Builds, inspects and runs one image, then removes it; returns its figures for the summary. */
async function proveImage(what: string, buildArgs: string[], expected: ExpectedModel): Promise<string[]> {
  log(`--- ${what} ---`);
  const buildStartedAt = Date.now();
  const buildSeconds = buildImage(buildArgs);
  log(`image built in ${buildSeconds.toFixed(0)} s`);
  try {
    const { command, size, rootfsBytes, appBytes } = inspectImage(buildStartedAt, expected);
    const coldStartMs = await runImage(command, expected);
    return [
      `${what}:`,
      `  image size    ${size} (buildah); files ${mb(rootfsBytes)}, of which /app ${mb(appBytes)}`,
      `  build time    ${buildSeconds.toFixed(0)} s (npm ci, build, the model, prune, SBOM)`,
      `  cold start    ${(coldStartMs / 1000).toFixed(2)} s (buildah run → /ready 200)`,
    ];
  } finally {
    if (!process.env.KEEP_IMAGE) {
      buildah(['rmi', imageTag]);
      buildah(['rmi', '--prune']);
    }
  }
}

// The checkpoint of the second build: GPT-2 architecture, written by transformers, with GPT-2's tokenizer.
// CONTAINER_TEST_MODEL=DIR puts another Hugging Face directory there (a 124 M-parameter one, to size images).
const CONTEXT_MODEL = 'models/container-test-gpt2';
const CONTEXT_MODEL_FROM =
  process.env.CONTAINER_TEST_MODEL ?? join(repoRoot, 'test/fixtures/seed-recipe-trained');

async function main(): Promise<void> {
  requireTools(['buildah', 'mmdebstrap']);
  if (process.getuid?.() !== 0) fail('needs root (buildah vfs storage and chroot isolation)');

  execFileSync('bash', [join(repoRoot, 'scripts/container/make-standins.sh')], {
    stdio: 'inherit',
    env: { ...process.env, STANDIN_CACHE: cacheDir },
  });

  // This storage belongs to the test alone: drop working containers an interrupted earlier run left behind.
  buildah(['rm', '--all']);

  const { pins } = dockerfileForStandins(readFileSync(join(repoRoot, 'docker/Dockerfile'), 'utf8'));
  for (const pin of pins) log(`base ${pin.image} is pinned to ${pin.digest}; built here on its stand-in`);
  const trainArgs = process.env.TRAIN_ARGS ? ['--build-arg', `TRAIN_ARGS=${process.env.TRAIN_ARGS}`] : [];
  const only = process.env.CONTAINER_TEST_ONLY ?? '';
  const summary: string[] = [];
  if (only !== 'pretrained')
    summary.push(
      ...(await proveImage('default build (the default preset, trained)', trainArgs, { kind: 'trained' })),
    );
  if (only !== 'default') {
    const contextModel = join(repoRoot, CONTEXT_MODEL);
    const parent = join(contextModel, '..');
    const parentExisted = existsSync(parent);
    rmSync(contextModel, { recursive: true, force: true });
    mkdirSync(contextModel, { recursive: true });
    // The Hugging Face files only: the fixture's reference data stays out of the build context.
    const hfFile =
      /^(config\.json|generation_config\.json|model\.safetensors|tokenizer\.json|tokenizer_config\.json|vocab\.json|merges\.txt|special_tokens_map\.json)$/;
    for (const file of readdirSync(CONTEXT_MODEL_FROM).filter((f) => hfFile.test(f)))
      cpSync(join(CONTEXT_MODEL_FROM, file), join(contextModel, file));
    try {
      summary.push(
        ...(await proveImage(
          `MODEL_SOURCE=./${CONTEXT_MODEL} (a transformers checkpoint in the build context)`,
          ['--build-arg', `MODEL_SOURCE=./${CONTEXT_MODEL}`],
          {
            kind: 'directory',
            contextPath: CONTEXT_MODEL,
            parameters: safetensorsParameters(join(contextModel, 'model.safetensors')),
          },
        )),
      );
    } finally {
      rmSync(contextModel, { recursive: true, force: true });
      if (!parentExisted) rmSync(parent, { recursive: true, force: true });
    }
  }
  log(
    'summary (base images are local stand-ins, see docs/deploy.md, "Proving the Dockerfile without Docker"):',
  );
  for (const line of summary) log(`  ${line}`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
