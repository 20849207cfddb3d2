#!/usr/bin/env node
// Stand-ins for gcloud, terraform and gh over a fake cloud kept in a folder, for testing the destroy and janitor
// scripts: the tool is chosen by the name it is called by (the test links all three names to this file).
//
// $FAKE_CLOUD holds: gcs/BUCKET/OBJECT (objects; OBJECT.generation beside one gives its generation), run/PROJECT/
// REGION/SERVICE (Cloud Run services), ar/HOST/PROJECT/REPO/IMAGE/sha256:… (image versions), secrets/PROJECT/
// SECRET/VERSION (a Secret Manager version; the file holds its state), runs/RUN_ID (a workflow run's status). Switch files make a tool fail: auth-broken (gcloud), gh-broken (gh), destroy-broken and
// lock-id-hidden (terraform). Every call is appended to calls.log as a JSON array.
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

const cloud = process.env.FAKE_CLOUD;
if (!cloud) throw new Error('FAKE_CLOUD is not set');
const tool = basename(process.argv[1] ?? '');
const args = process.argv.slice(2);
appendFileSync(join(cloud, 'calls.log'), `${JSON.stringify([tool, ...args])}\n`);

function die(message, code = 1) {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

function flag(name) {
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

const gcsPath = (url) => join(cloud, 'gcs', url.replace(/^gs:\/\//, ''));
// Flags that take a value; given as `--flag value`, the value is not a positional argument.
const valued = new Set([
  '--project',
  '--region',
  '--filter',
  '--format',
  '--location',
  '--repository',
  '--package',
  '--secret',
]);
const positional = () => args.filter((a, i) => !a.startsWith('--') && !valued.has(args[i - 1] ?? ''));

function gcloud() {
  const [group, command, sub] = args;
  if (existsSync(join(cloud, 'auth-broken'))) {
    die(
      `ERROR: (gcloud.${group}.${command}) There was a problem refreshing your current auth tokens: invalid_grant`,
    );
  }
  if (group === 'storage' && command === 'cp') {
    const [src, dst] = positional().slice(2);
    if (src.startsWith('gs://')) {
      if (!existsSync(gcsPath(src)))
        die(`ERROR: (gcloud.storage.cp) The following URLs matched no objects or files:\n-${src}`);
      writeFileSync(dst, readFileSync(gcsPath(src)));
    } else {
      mkdirSync(dirname(gcsPath(dst)), { recursive: true });
      writeFileSync(gcsPath(dst), readFileSync(src));
    }
    return;
  }
  if (group === 'storage' && command === 'ls') {
    const url = positional()[2];
    const dir = gcsPath(url);
    const entries = existsSync(dir) ? readdirSync(dir).filter((e) => !e.endsWith('.generation')) : [];
    if (entries.length === 0) die('ERROR: (gcloud.storage.ls) One or more URLs matched no objects.');
    for (const e of entries.sort()) {
      process.stdout.write(`${url}${e}${statSync(join(dir, e)).isDirectory() ? '/' : ''}\n`);
    }
    return;
  }
  if (group === 'storage' && command === 'rm') {
    const url = positional()[2];
    if (!existsSync(gcsPath(url)))
      die('ERROR: (gcloud.storage.rm) The following URLs matched no objects or files');
    rmSync(gcsPath(url), { recursive: true, force: true });
    return;
  }
  if (group === 'storage' && command === 'objects' && sub === 'describe') {
    const file = `${gcsPath(positional()[3])}.generation`;
    if (!existsSync(file)) die('ERROR: (gcloud.storage.objects.describe) gs object not found');
    process.stdout.write(readFileSync(file, 'utf8'));
    return;
  }
  if (group === 'run' && command === 'services') {
    const dir = join(cloud, 'run', flag('project') ?? '?', flag('region') ?? '?');
    if (sub === 'list') {
      for (const name of existsSync(dir) ? readdirSync(dir) : []) process.stdout.write(`${name}\n`);
      return;
    }
    if (sub === 'delete') {
      const name = positional()[3];
      if (!existsSync(join(dir, name)))
        die(`ERROR: (gcloud.run.services.delete) Cannot find service [${name}]`);
      rmSync(join(dir, name));
      return;
    }
  }
  if (group === 'artifacts' && command === 'docker' && sub === 'images') {
    const [verb, ref] = [args[3], positional()[4]];
    if (verb === 'list') {
      const dir = join(cloud, 'ar', ref);
      for (const v of existsSync(dir) ? readdirSync(dir) : []) process.stdout.write(`${v}\n`);
      return;
    }
    if (verb === 'delete') {
      const file = join(cloud, 'ar', ref.replace('@', '/'));
      if (!existsSync(file)) die('ERROR: (gcloud.artifacts.docker.images.delete) Image not found');
      rmSync(file);
      return;
    }
  }
  if (group === 'secrets' && command === 'versions' && (sub === 'describe' || sub === 'destroy')) {
    const version = positional()[3];
    const file = join(cloud, 'secrets', flag('project') ?? '?', flag('secret') ?? '?', version);
    if (!existsSync(file))
      die(`ERROR: (gcloud.secrets.versions.${sub}) NOT_FOUND: Secret Version [${version}] not found.`);
    if (sub === 'describe') process.stdout.write(`${readFileSync(file, 'utf8').trim()}\n`);
    else writeFileSync(file, 'DESTROYED');
    return;
  }
  die(`fake gcloud: unsupported call ${args.join(' ')}`, 2);
}

// terraform's real lock error, as 1.11 prints it (colours included); the GCS backend's lock id is a generation.
function lockError(id) {
  const bar = '\x1b[31m│\x1b[0m \x1b[0m';
  const lines = [
    '\x1b[1m\x1b[31mError: \x1b[0m\x1b[0m\x1b[1mError acquiring the state lock\x1b[0m',
    '',
    '\x1b[0mError message: writing "gs://b/p/default.tflock" failed: googleapi: Error 412: conditionNotMet',
    'Lock Info:',
    ...(id ? [`  ID:        ${id}`] : []),
    '  Path:      gs://b/p/default.tflock',
    '  Operation: OperationTypeApply',
    '  Who:       runner@fv-az1',
    '  Version:   1.9.8',
  ];
  return `\x1b[31m╷\x1b[0m\x1b[0m\n${lines.map((l) => `${bar}${l}`).join('\n')}\n\x1b[31m╵\x1b[0m\x1b[0m\n`;
}

function terraform() {
  const command = args[0];
  const backendFile = join('.terraform', 'backend.json');
  if (command === 'init') {
    const config = Object.fromEntries(
      args.filter((a) => a.startsWith('-backend-config=')).map((a) => a.slice(16).split('=')),
    );
    mkdirSync('.terraform', { recursive: true });
    writeFileSync(backendFile, JSON.stringify(config));
    return;
  }
  if (!existsSync(backendFile)) die('Error: Backend initialization required, please run "terraform init"');
  const { bucket, prefix } = JSON.parse(readFileSync(backendFile, 'utf8'));
  const lock = join(cloud, 'gcs', bucket, prefix, 'default.tflock');
  const state = join(cloud, 'gcs', bucket, prefix, 'default.tfstate');
  if (command === 'destroy') {
    if (existsSync(lock)) {
      const id = existsSync(join(cloud, 'lock-id-hidden'))
        ? ''
        : readFileSync(`${lock}.generation`, 'utf8').trim();
      process.stdout.write('Acquiring state lock. This may take a few moments...\n');
      die(lockError(id));
    }
    if (existsSync(join(cloud, 'destroy-broken')))
      die('Error: deleting Service: googleapi: Error 500: backend error');
    const known = existsSync(state) ? JSON.parse(readFileSync(state, 'utf8')).services : [];
    for (const s of known) rmSync(join(cloud, 'run', s.project, s.region, s.name), { force: true });
    writeFileSync(state, JSON.stringify({ services: [] }));
    process.stdout.write(`Destroy complete! Resources: ${known.length} destroyed.\n`);
    return;
  }
  if (command === 'force-unlock') {
    const id = args.at(-1);
    if (!existsSync(lock)) die('Error: Failed to unlock state: lock file not found');
    if (readFileSync(`${lock}.generation`, 'utf8').trim() !== id)
      die(`Error: Lock id "${id}" does not match existing lock`);
    rmSync(lock);
    rmSync(`${lock}.generation`);
    process.stdout.write('Terraform state has been successfully unlocked!\n');
    return;
  }
  die(`fake terraform: unsupported call ${args.join(' ')}`, 2);
}

function gh() {
  if (existsSync(join(cloud, 'gh-broken'))) die('gh: Bad credentials (HTTP 401)');
  const m = /^repos\/[^/]+\/[^/]+\/actions\/runs\/(\d+)$/.exec(args[1] ?? '');
  if (args[0] !== 'api' || !m) die(`fake gh: unsupported call ${args.join(' ')}`, 2);
  const file = join(cloud, 'runs', m[1]);
  if (!existsSync(file)) die('gh: Not Found (HTTP 404)');
  process.stdout.write(`${readFileSync(file, 'utf8').trim()}\n`);
}

if (tool === 'gcloud') gcloud();
else if (tool === 'terraform') terraform();
else if (tool === 'gh') gh();
else die(`fake-cloud-cli: called as ${tool}`, 2);
