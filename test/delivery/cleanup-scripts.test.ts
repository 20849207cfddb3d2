// Runs the destroy and janitor scripts against a fake cloud (gcloud, terraform and gh stand-ins over a folder):
// a stale lock from a cancelled apply is forced open with the right id, what state lost is deleted by name, the
// image goes too, the state only once everything else is gone, and nothing fails silently.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { stripVTControlCharacters } from 'node:util';
import { repoRoot } from './hcl-model.js';

const destroyScript = join(repoRoot, '.github/scripts/destroy-environment.sh');
const sweepScript = join(repoRoot, '.github/scripts/janitor-sweep.sh');
const fakeCli = join(import.meta.dirname, 'fake-cloud-cli.mjs');
// The scripts read JSON with jq, which GitHub's runners have; where it is missing (or JQ_STANDIN=1), a stand-in
// covers their filters.
const jqStandin = join(import.meta.dirname, 'jq-standin.mjs');
const hasJq =
  process.env.JQ_STANDIN !== '1' &&
  spawnSync('sh', ['-c', 'command -v jq'], { encoding: 'utf8' }).status === 0;
console.log(`jq: ${hasJq ? 'installed' : 'not installed, using test/delivery/jq-standin.mjs'}`);

const bucket = 'tfstate-bucket';
const root = 'tiny-llm/envs';
const project = 'demo-project-1';
const region = 'europe-west10';
const registryPath = `${region}-docker.pkg.dev/${project}/tiny-llm/tiny-llm`;
const digest = (n: number): string => `sha256:${String(n).padStart(64, '0')}`;

type Run = { status: number | null; out: string; calls: string[][] };

let cloud = '';
let workdir = '';
let bin = '';

beforeEach(() => {
  const base = mkdtempSync(join(tmpdir(), 'fake-cloud-'));
  cloud = join(base, 'cloud');
  workdir = join(base, 'terraform');
  bin = join(base, 'bin');
  for (const d of [cloud, workdir, bin]) mkdirSync(d, { recursive: true });
  chmodSync(fakeCli, 0o755);
  for (const tool of ['gcloud', 'terraform', 'gh']) symlinkSync(fakeCli, join(bin, tool));
  if (!hasJq) {
    chmodSync(jqStandin, 0o755);
    symlinkSync(jqStandin, join(bin, 'jq'));
  }
});

afterEach(() => rmSync(dirname(cloud), { recursive: true, force: true }));

function put(path: string, content = ''): void {
  const file = join(cloud, path);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content);
}

// One deployed environment: recorded inputs, a state that knows its service or not, the live service and image.
function environment(
  envId: string,
  opts: {
    createdAt?: number;
    ttl?: number;
    stateKnowsService?: boolean;
    lockGeneration?: string;
    /** The API key version the deploy added (secret id, version number), with its state in Secret Manager. */
    apiKey?: { secret: string; version: string; state: string | null };
  } = {},
): { image: string } {
  const image = `${registryPath}@${digest(Number(envId.replace(/\D/g, '')))}`;
  const prefix = `gcs/${bucket}/${root}/${envId}`;
  const inputs = {
    project_id: project,
    region,
    environment_id: envId,
    image,
    runtime_service_account: `tiny-llm-runtime@${project}.iam.gserviceaccount.com`,
    public_access: true,
    public_access_mode: 'invoker_check_disabled',
    created_at: opts.createdAt ?? Math.floor(Date.now() / 1000) - 4 * 3600,
    ttl_hours: opts.ttl ?? 3,
    ...(opts.apiKey
      ? { api_key_secret: opts.apiKey.secret, api_key_secret_version: opts.apiKey.version }
      : {}),
  };
  put(`${prefix}/inputs.tfvars.json`, JSON.stringify(inputs));
  if (opts.apiKey?.state)
    put(`secrets/${project}/${opts.apiKey.secret}/${opts.apiKey.version}`, opts.apiKey.state);
  const services = opts.stateKnowsService ? [{ project, region, name: `tiny-llm-${envId}` }] : [];
  put(`${prefix}/default.tfstate`, JSON.stringify({ services }));
  if (opts.lockGeneration) {
    put(`${prefix}/default.tflock`, '{"Operation":"OperationTypeApply"}');
    put(`${prefix}/default.tflock.generation`, opts.lockGeneration);
  }
  put(`run/${project}/${region}/tiny-llm-${envId}`);
  put(`ar/${image.replace('@', '/')}`);
  return { image };
}

function run(script: string, args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync('bash', [script, ...args], {
    cwd: workdir,
    encoding: 'utf8',
    env: {
      PATH: `${bin}:${process.env.PATH}`,
      HOME: process.env.HOME ?? '/tmp',
      FAKE_CLOUD: cloud,
      STATE_BUCKET: bucket,
      TF_STATE_PREFIX_ROOT: root,
      TF_LOCK_TIMEOUT: '1s',
      GITHUB_REPOSITORY: 'owner/repo',
      ...env,
    },
  });
  const log = join(cloud, 'calls.log');
  const calls = existsSync(log)
    ? readFileSync(log, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as string[])
    : [];
  return { status: r.status, out: `${r.stdout}${r.stderr}`, calls };
}

const exists = (path: string): boolean => existsSync(join(cloud, path));
const serviceExists = (envId: string): boolean => exists(`run/${project}/${region}/tiny-llm-${envId}`);
const imageExists = (image: string): boolean => exists(`ar/${image.replace('@', '/')}`);
const stateExists = (envId: string): boolean => exists(`gcs/${bucket}/${root}/${envId}`);
const callsOf = (r: Run, tool: string, command: string): string[][] =>
  r.calls.filter((c) => c[0] === tool && c[1] === command);

describe('destroy-environment.sh', () => {
  test('a cancelled apply: stale lock forced open with its id, the service state lost deleted by name', () => {
    const { image } = environment('901-1', { lockGeneration: '1733577600123456' });
    const r = run(destroyScript, ['901-1']);
    console.log(stripVTControlCharacters(r.out).trim());
    assert.equal(r.status, 0, r.out);
    assert.deepEqual(
      callsOf(r, 'terraform', 'force-unlock').map((c) => c.slice(2)),
      [['-force', '1733577600123456']],
    );
    const destroys = callsOf(r, 'terraform', 'destroy');
    assert.equal(destroys.length, 2, 'destroy, unlock, destroy again');
    for (const d of destroys)
      assert.ok(d.includes('-lock-timeout=1s'), `waits for the lock first: ${d.join(' ')}`);
    assert.ok(!serviceExists('901-1'), 'the service state never knew is gone');
    assert.ok(!imageExists(image), 'the image is gone');
    assert.ok(!stateExists('901-1'), 'the state prefix is removed last');
  });

  test('a lock error without an id: the id is read from the lock object (its generation)', () => {
    environment('902-1', { lockGeneration: '42', stateKnowsService: true });
    put('lock-id-hidden');
    const r = run(destroyScript, ['902-1']);
    assert.equal(r.status, 0, r.out);
    assert.ok(callsOf(r, 'gcloud', 'storage').some((c) => c.includes('describe')));
    assert.deepEqual(callsOf(r, 'terraform', 'force-unlock')[0]?.slice(2), ['-force', '42']);
    assert.ok(!stateExists('902-1'));
  });

  test('an ordinary destroy: no unlock, terraform removes the service, the image is deleted', () => {
    const { image } = environment('903-2', { stateKnowsService: true });
    const r = run(destroyScript, ['903-2']);
    assert.equal(r.status, 0, r.out);
    assert.deepEqual(callsOf(r, 'terraform', 'force-unlock'), []);
    assert.deepEqual(
      callsOf(r, 'gcloud', 'run').filter((c) => c.includes('delete')),
      [],
      'nothing left for the by-name step',
    );
    assert.ok(!serviceExists('903-2') && !imageExists(image) && !stateExists('903-2'));
  });

  test('nothing recorded: terraform is not run, the pushed image is still deleted', () => {
    const image = `${registryPath}@${digest(904)}`;
    put(`ar/${image.replace('@', '/')}`);
    put(`gcs/${bucket}/other-object`);
    const r = run(destroyScript, ['904-1', image]);
    assert.equal(r.status, 0, r.out);
    assert.deepEqual(
      r.calls.filter((c) => c[0] === 'terraform'),
      [],
    );
    assert.ok(!imageExists(image));
  });

  test('a failed destroy still deletes by name, keeps the state for the next attempt and fails', () => {
    const { image } = environment('905-1', { stateKnowsService: true });
    put('destroy-broken');
    const r = run(destroyScript, ['905-1']);
    assert.notEqual(r.status, 0);
    assert.match(r.out, /terraform destroy failed/);
    assert.ok(!serviceExists('905-1') && !imageExists(image), 'deleted by name');
    assert.ok(stateExists('905-1'), 'state kept');
  });

  test('the API key version the deploy added is destroyed once the service is gone; a gone one is fine', () => {
    environment('907-1', {
      stateKnowsService: true,
      apiKey: { secret: 'tiny-llm-api-key', version: '7', state: 'ENABLED' },
    });
    put(`secrets/${project}/tiny-llm-api-key/6`, 'ENABLED');
    const r = run(destroyScript, ['907-1']);
    assert.equal(r.status, 0, r.out);
    assert.equal(readFileSync(join(cloud, `secrets/${project}/tiny-llm-api-key/7`), 'utf8'), 'DESTROYED');
    assert.equal(
      readFileSync(join(cloud, `secrets/${project}/tiny-llm-api-key/6`), 'utf8'),
      'ENABLED',
      "another environment's version is left alone",
    );
    const order = r.calls.map((c) => c.slice(0, 4).join(' '));
    assert.ok(
      order.findIndex((c) => c.startsWith('gcloud secrets versions destroy')) >
        order.findIndex((c) => c.startsWith('terraform destroy')),
      'after the service',
    );
    assert.ok(!stateExists('907-1'));

    environment('908-1', {
      stateKnowsService: true,
      apiKey: { secret: 'tiny-llm-api-key', version: '9', state: null },
    });
    const again = run(destroyScript, ['908-1']);
    assert.equal(again.status, 0, again.out);
    assert.match(again.out, /API key version tiny-llm-api-key\/9 is already gone/);
    assert.ok(!stateExists('908-1'));
  });

  test('an environment without an API key never touches Secret Manager', () => {
    environment('909-1', { stateKnowsService: true });
    const r = run(destroyScript, ['909-1']);
    assert.equal(r.status, 0, r.out);
    assert.deepEqual(callsOf(r, 'gcloud', 'secrets'), []);
  });

  test('an unreadable bucket is an error, never "nothing recorded"', () => {
    environment('906-1', { stateKnowsService: true });
    put('auth-broken');
    const r = run(destroyScript, ['906-1']);
    assert.notEqual(r.status, 0);
    assert.match(r.out, /cannot read gs:\/\//);
    assert.ok(serviceExists('906-1') && stateExists('906-1'));
  });
});

describe('janitor-sweep.sh', () => {
  const now = Math.floor(Date.now() / 1000);

  test('destroys expired environments of finished runs, image included, and keeps the rest', () => {
    const done = environment('1001-1', { createdAt: now - 5 * 3600, lockGeneration: '777' });
    const young = environment('1002-1', { createdAt: now - 600, stateKnowsService: true });
    const running = environment('1003-1', { createdAt: now - 5 * 3600, stateKnowsService: true });
    const gone = environment('1004-2', { createdAt: now - 9 * 3600, stateKnowsService: true });
    put('runs/1001', 'completed');
    put('runs/1002', 'in_progress');
    put('runs/1003', 'in_progress');
    // No runs/1004: GitHub answers 404 for a deleted run, which can hold no lock either.
    const r = run(sweepScript, []);
    console.log(
      r.out
        .split('\n')
        .filter((l) => /^\d+-\d+: |^janitor:/.test(l))
        .join('\n'),
    );
    assert.equal(r.status, 0, r.out);
    assert.ok(
      !stateExists('1001-1') && !serviceExists('1001-1') && !imageExists(done.image),
      'expired, finished',
    );
    assert.ok(!stateExists('1004-2') && !imageExists(gone.image), 'expired, run deleted');
    assert.ok(stateExists('1002-1') && imageExists(young.image), 'not expired: kept');
    assert.ok(stateExists('1003-1') && imageExists(running.image), 'run still going: kept');
    assert.match(r.out, /4 environment\(s\) checked/);
  });

  test('fails loudly when it cannot authenticate or list', () => {
    environment('1101-1', { createdAt: now - 5 * 3600 });
    put('auth-broken');
    const r = run(sweepScript, []);
    assert.notEqual(r.status, 0);
    assert.match(r.out, /cannot list gs:\/\/tfstate-bucket\/tiny-llm\/envs\//);
    assert.match(r.out, /refreshing your current auth tokens/, 'the cause is shown');
  });

  test('an empty bucket is a clean sweep', () => {
    put(`gcs/${bucket}/.keep`);
    const r = run(sweepScript, []);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /0 environment\(s\) checked/);
  });

  test('when GitHub cannot be asked, the environment is kept and the sweep fails', () => {
    const env = environment('1201-1', { createdAt: now - 5 * 3600, stateKnowsService: true });
    put('gh-broken');
    const r = run(sweepScript, []);
    assert.notEqual(r.status, 0);
    assert.match(r.out, /cannot ask GitHub/);
    assert.ok(stateExists('1201-1') && imageExists(env.image));
  });

  test('a dry run destroys nothing', () => {
    const env = environment('1301-1', { createdAt: now - 5 * 3600, stateKnowsService: true });
    put('runs/1301', 'completed');
    const r = run(sweepScript, [], { DRY_RUN: 'true' });
    assert.equal(r.status, 0, r.out);
    assert.ok(stateExists('1301-1') && imageExists(env.image) && serviceExists('1301-1'));
    assert.deepEqual(
      r.calls.filter((c) => c[0] === 'terraform'),
      [],
    );
    assert.ok(readdirSync(join(cloud, 'gcs', bucket, root)).includes('1301-1'));
  });
});
