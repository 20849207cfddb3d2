// Checks the GitHub Actions workflows with GitHub's own parser: they are valid, the pipeline's job graph builds,
// scans, pushes only the scanned image, deploys, smoke-tests, waits and always destroys (recovering stale locks),
// only main's jobs in the cloud Environment get credentials, and every action is pinned.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadModule, obj, variable } from './hcl-model.js';
import { asMap, type JobModel, loadWorkflow, type StepModel, type WorkflowModel } from './workflow-model.js';

const root = join(import.meta.dirname, '../..');
const workflowDir = join(root, '.github/workflows');
const workflowFiles = readdirSync(workflowDir)
  .filter((f) => /\.ya?ml$/.test(f))
  .map((f) => join(workflowDir, f));

const pipeline = await loadWorkflow(join(workflowDir, 'pipeline.yml'));
const janitor = await loadWorkflow(join(workflowDir, 'janitor.yml'));
const { doc: bootstrap } = await loadModule(join(root, 'terraform/bootstrap'));

// The GitHub Environment a job runs in (`environment: NAME` or `environment: {name: NAME, url: ...}`).
function environmentOf(j: JobModel): string | undefined {
  const e = j.raw.environment;
  if (typeof e === 'string') return e;
  const name = asMap(e).name;
  return typeof name === 'string' ? name : undefined;
}

function runs(j: JobModel): string {
  return j.steps.map((s) => s.run ?? '').join('\n');
}

function job(w: WorkflowModel, id: string): JobModel {
  const j = w.jobs.get(id);
  assert.ok(j, `${w.file} has a job "${id}"`);
  return j;
}

// All jobs that `id` depends on, directly or not.
function ancestors(w: WorkflowModel, id: string, seen = new Set<string>()): Set<string> {
  for (const need of job(w, id).needs) {
    if (!seen.has(need)) {
      seen.add(need);
      ancestors(w, need, seen);
    }
  }
  return seen;
}

function stepsUsing(j: JobModel, action: string): StepModel[] {
  return j.steps.filter((s) => s.uses?.split('@')[0] === action);
}

function withOf(step: StepModel): Record<string, string> {
  return Object.fromEntries(Object.entries(asMap(step.raw.with)).map(([k, v]) => [k, String(v)]));
}

/** A GitHub expression as the parser keeps it: expr('inputs.x') is "${{ inputs.x }}". */
const expr = (e: string): string => `\${{ ${e} }}`;

function envOf(step: StepModel): Record<string, string> {
  return Object.fromEntries(Object.entries(asMap(step.raw.env)).map(([k, v]) => [k, String(v)]));
}

describe('workflow files', () => {
  test('every workflow parses with GitHub’s parser with zero errors', async () => {
    assert.ok(workflowFiles.length >= 2, 'pipeline and janitor exist');
    for (const file of workflowFiles) {
      const w = await loadWorkflow(file);
      assert.deepEqual(w.errors, [], `${file}: ${w.errors.join('; ')}`);
      assert.ok(w.jobs.size > 0, `${file} has jobs`);
    }
  });

  test('the parser check is not vacuous: a broken workflow reports errors', async () => {
    const broken = pipeline.text.replace(
      'runs-on: ubuntu-24.04',
      'runs-on: ubuntu-24.04\n    run-on-typo: true',
    );
    const { parseWorkflow, NoOperationTraceWriter } = await import('@actions/workflow-parser');
    const parsed = parseWorkflow({ name: 'broken.yml', content: broken }, new NoOperationTraceWriter());
    assert.ok(parsed.context.errors.count > 0, 'an unknown job key is an error');
  });

  test('every third-party action is pinned to a full commit SHA with its version in a comment', () => {
    let pinned = 0;
    for (const file of workflowFiles) {
      const lines = readFileSync(file, 'utf8').split('\n');
      for (const [i, line] of lines.entries()) {
        const m = /^\s*(?:-\s+)?uses:\s*(\S+)(.*)$/.exec(line);
        if (!m) continue;
        const [, ref, rest] = m as unknown as [string, string, string];
        if (ref.startsWith('./')) continue;
        assert.match(ref, /^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/, `${file}:${i + 1} pins ${ref} to a commit SHA`);
        assert.match(rest, /#\s*v\d+(\.\d+)*/, `${file}:${i + 1} names the version of ${ref} in a comment`);
        pinned++;
      }
    }
    console.log(`# ${pinned} action references, all SHA-pinned`);
    assert.ok(pinned > 10);
  });

  test('least privilege: read-only by default, id-token only where Google Cloud is called', () => {
    for (const w of [pipeline, janitor]) {
      assert.deepEqual(w.raw.permissions, { contents: 'read' }, `${w.file}: top-level permissions`);
      for (const j of w.jobs.values()) {
        const authenticates = stepsUsing(j, 'google-github-actions/auth').length > 0;
        const perms = asMap(j.raw.permissions);
        assert.equal(
          perms['id-token'] === 'write',
          authenticates,
          `${j.id}: id-token write iff it authenticates`,
        );
        for (const [scope, level] of Object.entries(perms)) {
          assert.ok(scope === 'id-token' || level === 'read', `${j.id}: ${scope} is ${level}`);
        }
      }
    }
  });

  test('only jobs in the cloud GitHub Environment authenticate; its name is the one Workload Identity requires', () => {
    const required = String(variable(bootstrap, 'github_environment').default);
    let cloudJobs = 0;
    for (const w of [pipeline, janitor]) {
      for (const j of w.jobs.values()) {
        const authenticates = stepsUsing(j, 'google-github-actions/auth').length > 0;
        if (!authenticates) continue;
        assert.equal(environmentOf(j), required, `${w.file} ${j.id} runs in environment ${required}`);
        cloudJobs++;
      }
    }
    assert.equal(cloudJobs, 4, 'push, deploy, destroy and the janitor');
  });

  test('every variable the cloud jobs read is one the bootstrap outputs (or the optional access mode)', () => {
    const outputs = Object.keys(obj(obj(obj(bootstrap.output).github_variables).value));
    const used = new Set(
      [pipeline, janitor].flatMap((w) => [...w.text.matchAll(/\bvars\.(\w+)/g)].map((m) => m[1] ?? '')),
    );
    for (const name of used) {
      assert.ok(
        outputs.includes(name) || name === 'GCP_PUBLIC_ACCESS_MODE',
        `vars.${name} is a bootstrap output`,
      );
    }
    assert.ok(used.has('GCP_RUNTIME_SERVICE_ACCOUNT'));
  });

  test('Google Cloud auth: Workload Identity Federation when configured, else the GCP_SA_KEY secret', () => {
    for (const w of [pipeline, janitor]) {
      for (const j of w.jobs.values()) {
        const auth = stepsUsing(j, 'google-github-actions/auth');
        if (auth.length === 0) continue;
        const wif = auth.find((s) => withOf(s).workload_identity_provider);
        const key = auth.find((s) => withOf(s).credentials_json);
        assert.ok(wif && key, `${j.id} has both auth paths`);
        assert.match(wif.if ?? '', /vars\.GCP_WORKLOAD_IDENTITY_PROVIDER != ''/);
        assert.match(key.if ?? '', /vars\.GCP_WORKLOAD_IDENTITY_PROVIDER == ''/);
        assert.match(withOf(key).credentials_json ?? '', /secrets\.GCP_SA_KEY/);
      }
    }
  });

  test('terraform runs without the output wrapper wherever it is installed', () => {
    let count = 0;
    for (const w of [pipeline, janitor]) {
      for (const j of w.jobs.values()) {
        for (const s of stepsUsing(j, 'hashicorp/setup-terraform')) {
          assert.equal(withOf(s).terraform_wrapper, 'false', `${j.id}: terraform_wrapper`);
          count++;
        }
      }
    }
    assert.ok(count >= 3, 'deploy, destroy and the janitor install terraform');
  });
});

describe('pipeline job graph', () => {
  test('the stages run in order: test → build → scan → push → deploy → smoke → wait → destroy', () => {
    const order = ['test', 'build', 'scan', 'push', 'deploy', 'smoke', 'wait', 'destroy'];
    for (let i = 1; i < order.length; i++) {
      const before = ancestors(pipeline, order[i]!);
      for (const earlier of order.slice(0, i)) {
        assert.ok(before.has(earlier), `${order[i]} runs after ${earlier}`);
      }
    }
  });

  test('push needs the scan and runs only when it passed', () => {
    const push = job(pipeline, 'push');
    assert.ok(push.needs.includes('scan'));
    assert.doesNotMatch(
      push.if,
      /always\(\)|failure\(\)|cancelled\(\)/,
      'push never runs after a failed scan',
    );
    assert.match(push.if, /^success\(\)/);
  });

  test('the scan gate fails on CRITICAL findings and honours only the documented ignore file', () => {
    const scan = job(pipeline, 'scan');
    const trivy = stepsUsing(scan, 'aquasecurity/trivy-action');
    const gate = trivy.find((s) => withOf(s)['exit-code'] === '1');
    assert.ok(gate, 'one Trivy step fails the job');
    const w = withOf(gate);
    assert.equal(w.severity, 'CRITICAL');
    assert.equal(w.trivyignores, '.trivyignore.yaml');
    assert.equal(w['ignore-unfixed'], 'false');
    assert.equal(gate.if, undefined, 'the gate is never skipped');
    assert.equal(gate.raw['continue-on-error'], undefined, 'the gate cannot be softened');
  });

  test('the pushed image is exactly the scanned one (same archive, same config digest)', () => {
    const build = job(pipeline, 'build');
    const scan = job(pipeline, 'scan');
    const push = job(pipeline, 'push');
    const uploads = stepsUsing(build, 'actions/upload-artifact').filter((s) => withOf(s).name === 'image');
    assert.equal(uploads.length, 1, 'the build job saves the image once');
    for (const j of [scan, push]) {
      const downloads = stepsUsing(j, 'actions/download-artifact');
      assert.deepEqual(
        downloads.map((s) => withOf(s).name),
        ['image'],
        `${j.id} takes the build's archive`,
      );
    }
    // scan verifies the archive against build's digests before scanning it, and exports what it scanned.
    const verifyIndex = scan.steps.findIndex((s) => s.id === 'verify');
    const gateIndex = scan.steps.findIndex((s) => withOf(s)['exit-code'] === '1');
    assert.ok(verifyIndex >= 0 && verifyIndex < gateIndex, 'verification precedes the scan');
    const verify = scan.steps[verifyIndex]!;
    assert.match(envOf(verify).EXPECTED_SHA256 ?? '', /needs\.build\.outputs\.archive_sha256/);
    assert.match(verify.run ?? '', /sha256sum --check/);
    const scanOutputs = asMap(scan.raw.outputs);
    assert.match(String(scanOutputs.scanned_config_digest), /steps\.verify\.outputs\.config_digest/);
    // push loads only what scan vouched for and checks the registry's copy against it.
    const pushEnv = Object.assign({}, ...push.steps.map(envOf)) as Record<string, string>;
    assert.match(pushEnv.SCANNED_SHA256 ?? '', /needs\.scan\.outputs\.scanned_archive_sha256/);
    assert.match(pushEnv.SCANNED_CONFIG ?? '', /needs\.scan\.outputs\.scanned_config_digest/);
    const runs = push.steps.map((s) => s.run ?? '').join('\n');
    assert.match(runs, /sha256sum --check --strict/);
    assert.match(
      runs,
      /registry-config-digest\.sh[^\n]*\n\s*test "\$\{pushed_config\}" = "\$\{SCANNED_CONFIG\}"/,
    );
    assert.doesNotMatch(runs, /docker build/, 'push never rebuilds');
    const deploy = job(pipeline, 'deploy');
    const deployEnv = Object.assign({}, ...deploy.steps.map(envOf)) as Record<string, string>;
    assert.match(
      deployEnv.IMAGE_REF ?? '',
      /needs\.push\.outputs\.image_ref/,
      'deploy runs the pushed digest',
    );
  });

  test('deploy applies a per-run environment (run id + attempt) with remote state', () => {
    const deploy = job(pipeline, 'deploy');
    const first = deploy.steps[0]!;
    assert.equal(first.id, 'env', 'the environment id is the first step, so destroy always knows it');
    assert.match(first.run ?? '', /GITHUB_RUN_ID\}-\$\{GITHUB_RUN_ATTEMPT/);
    const text = runs(deploy);
    assert.match(text, /terraform init[\s\S]*-backend-config="bucket=\$\{STATE_BUCKET\}"/);
    assert.match(
      text,
      /terraform apply -auto-approve -lock-timeout="\$\{TF_LOCK_TIMEOUT\}" -var-file=inputs\.tfvars\.json/,
    );
    assert.match(String(asMap(pipeline.raw.env).TF_LOCK_TIMEOUT), /^\d+[sm]$/);
    assert.match(text, /environment_id: \$env/);
  });

  test('the recorded inputs carry everything destroy and the janitor need, public access mode included', () => {
    const deploy = job(pipeline, 'deploy');
    const record = deploy.steps.find(
      (s) => /inputs\.tfvars\.json/.test(s.run ?? '') && /jq -n/.test(s.run ?? ''),
    );
    assert.ok(record, 'a step records the inputs');
    // Every variable of the per-run module without a default, and the access mode, are recorded.
    for (const key of ['project_id', 'region', 'environment_id', 'image', 'runtime_service_account']) {
      assert.match(record.run ?? '', new RegExp(`\\b${key}: \\$`), `records ${key}`);
    }
    assert.match(record.run ?? '', /public_access: true, public_access_mode: \$access/);
    assert.match(
      envOf(record).PUBLIC_ACCESS_MODE ?? '',
      /vars\.GCP_PUBLIC_ACCESS_MODE \|\| 'invoker_check_disabled'/,
    );
    assert.match(record.run ?? '', /created_at: \$created, ttl_hours: \$ttl/);
  });

  test('smoke checks the live URL before the wait, and the wait is an input with a default', () => {
    const smoke = job(pipeline, 'smoke');
    const wait = job(pipeline, 'wait');
    assert.ok(wait.needs.includes('smoke'));
    assert.match(smoke.steps.map((s) => s.run ?? '').join('\n'), /smoke-test\.sh "\$\{CLOUD_RUN_URL\}"/);
    const script = readFileSync(join(root, '.github/scripts/smoke-test.sh'), 'utf8');
    for (const path of ['/ready', '/health', '/generate', '/v1/chat/completions', 'data: [DONE]']) {
      assert.ok(script.includes(path), `smoke test covers ${path}`);
    }
    const input = asMap(asMap(asMap(asMap(pipeline.raw.on).workflow_dispatch).inputs).wait_minutes);
    assert.equal(input.default, 5);
  });

  test('the wait honours 0 minutes; an empty input (a push) waits 5; over 120 is refused', () => {
    const step = job(pipeline, 'wait').steps.find((s) => s.name === 'Wait');
    assert.ok(step?.run);
    // GitHub renders a number input as its digits and a missing one as '': `|| 5` would turn 0 into 5.
    assert.equal(envOf(step).WAIT_MINUTES, `\${{ inputs.wait_minutes }}`);
    const dir = mkdtempSync(join(tmpdir(), 'wait-step-'));
    try {
      writeFileSync(join(dir, 'sleep'), '#!/bin/sh\necho "slept $1"\n', { mode: 0o755 });
      const waitFor = (minutes: string) =>
        spawnSync('bash', ['-e', '-c', step.run ?? ''], {
          encoding: 'utf8',
          env: { PATH: `${dir}:${process.env.PATH}`, WAIT_MINUTES: minutes },
        });
      const slept = (minutes: string) => /slept (\d+)/.exec(waitFor(minutes).stdout)?.[1];
      assert.equal(slept('0'), '0');
      assert.equal(slept(''), '300');
      assert.equal(slept('7'), '420');
      assert.notEqual(waitFor('121').status, 0);
      assert.notEqual(waitFor('5m').status, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('destroy runs always() once push started, after failures and cancellation too', () => {
    const destroy = job(pipeline, 'destroy');
    assert.ok(destroy.needs.includes('deploy') && destroy.needs.includes('push'));
    assert.ok(destroy.needs.includes('wait'), 'destroy waits for the wait');
    assert.match(destroy.if, /^always\(\) && needs\.push\.result != 'skipped'$/);
    assert.match(
      String(asMap(destroy.raw.env).ENVIRONMENT_ID),
      /needs\.deploy\.outputs\.environment_id \|\| format\('\{0\}-\{1\}', github\.run_id, github\.run_attempt\)/,
    );
  });

  test('destroy recovers a stale lock and deletes what state lost, the image included (destroy-environment.sh)', () => {
    const destroy = job(pipeline, 'destroy');
    const step = destroy.steps.find((s) => /destroy-environment\.sh/.test(s.run ?? ''));
    assert.ok(step, 'destroy runs destroy-environment.sh');
    assert.match(step.run ?? '', /destroy-environment\.sh "\$\{ENVIRONMENT_ID\}" "\$\{IMAGE_REF\}"/);
    // The image the registry holds, known even when push's digest check or deploy failed afterwards.
    assert.match(envOf(step).IMAGE_REF ?? '', /needs\.push\.outputs\.pushed_ref/);
    assert.match(
      String(asMap(job(pipeline, 'push').raw.outputs).pushed_ref),
      /steps\.push\.outputs\.pushed_ref/,
    );
    const script = readFileSync(join(root, '.github/scripts/destroy-environment.sh'), 'utf8');
    assert.match(script, /terraform destroy [^\n]*-lock-timeout="\$\{lock_timeout\}"/);
    assert.match(script, /terraform force-unlock -force "\$\{lock_id\}"/);
    assert.match(script, /gcloud run services delete/);
    assert.match(script, /gcloud artifacts docker images delete "\$\{ref\}" --delete-tags/);
  });

  test('one run per ref, never cancelled mid-deploy', () => {
    const c = asMap(pipeline.raw.concurrency);
    assert.match(String(c.group), /github\.ref/);
    assert.equal(c['cancel-in-progress'], false);
  });

  test('the test job audits production dependencies and runs the whole suite', () => {
    const text = runs(job(pipeline, 'test'));
    assert.match(text, /npm audit --omit=dev --audit-level=high/);
    assert.match(text, /npm test/);
    assert.match(text, /npm ci/);
  });

  test('the test job checks terraform fmt, with terraform installed before npm test', () => {
    const steps = job(pipeline, 'test').steps;
    const setup = steps.findIndex((s) => s.uses?.startsWith('hashicorp/setup-terraform@'));
    const fmt = steps.findIndex((s) => /terraform fmt -check -recursive/.test(s.run ?? ''));
    const npmTest = steps.findIndex((s) => /npm test/.test(s.run ?? ''));
    assert.ok(setup >= 0 && setup < fmt, 'terraform is installed, then fmt -check runs');
    assert.ok(setup < npmTest, 'so terraform-files.test.ts runs its fmt check too');
    assert.equal(steps[fmt]?.if, undefined, 'fmt runs on every leg');
    assert.ok(
      steps.some((s) => /terraform[^\n]*validate/.test(s.run ?? '')),
      'both modules validate',
    );
  });

  test('SBOMs are produced and kept as artifacts', () => {
    const build = job(pipeline, 'build');
    assert.match(build.steps.map((s) => s.run ?? '').join('\n'), /sbom\.cdx\.json/);
    const scan = job(pipeline, 'scan');
    assert.ok(stepsUsing(scan, 'aquasecurity/trivy-action').some((s) => withOf(s).format === 'cyclonedx'));
    const names = [build, scan].flatMap((j) =>
      stepsUsing(j, 'actions/upload-artifact').map((s) => withOf(s).name),
    );
    assert.ok(names.includes('sbom-and-model-report') && names.includes('sbom-image'), names.join(','));
  });
});

describe('janitor', () => {
  const sweep = readFileSync(join(root, '.github/scripts/janitor-sweep.sh'), 'utf8');

  test('runs on a schedule and destroys environments past their expiry through destroy-environment.sh', () => {
    const on = asMap(janitor.raw.on);
    assert.ok(Array.isArray(on.schedule) && on.schedule.length > 0, 'scheduled');
    const j = job(janitor, 'sweep');
    assert.match(runs(j), /janitor-sweep\.sh/);
    assert.match(sweep, /root_url="gs:\/\/\$\{STATE_BUCKET\}\/\$\{TF_STATE_PREFIX_ROOT\}\/"/);
    assert.match(sweep, /\.created_at \+ 3600 \* \.ttl_hours/);
    assert.match(sweep, /destroy-environment\.sh" "\$\{env_id\}"/);
    // Same state layout and lock wait as the pipeline.
    assert.equal(asMap(janitor.raw.env).TF_STATE_PREFIX_ROOT, asMap(pipeline.raw.env).TF_STATE_PREFIX_ROOT);
    assert.equal(asMap(janitor.raw.env).TF_LOCK_TIMEOUT, asMap(pipeline.raw.env).TF_LOCK_TIMEOUT);
    // It asks GitHub whether an environment's run has finished before touching its state.
    assert.equal(asMap(j.raw.permissions).actions, 'read');
    assert.match(
      String(asMap(j.steps.find((s) => /janitor-sweep/.test(s.run ?? ''))?.raw.env).GH_TOKEN),
      /github\.token/,
    );
  });

  test('nothing hides a failure: no stderr thrown away, no `|| true` on a cloud call', () => {
    for (const [name, text] of [
      ['janitor.yml', janitor.text],
      ['janitor-sweep.sh', sweep],
      ['destroy-environment.sh', readFileSync(join(root, '.github/scripts/destroy-environment.sh'), 'utf8')],
    ]) {
      for (const line of (text ?? '').split('\n')) {
        if (!/\b(gcloud|terraform|gh)\b/.test(line)) continue;
        assert.doesNotMatch(line, /2>\s*\/dev\/null|\|\|\s*true/, `${name}: ${line.trim()}`);
      }
    }
  });
});

describe('dependabot and the Trivy ignore file', () => {
  test('dependabot updates npm, the Dockerfile’s base images and the pinned actions', () => {
    const text = readFileSync(join(root, '.github/dependabot.yml'), 'utf8');
    const entries = [
      ...text.matchAll(/package-ecosystem:\s*([\w-]+)\s*\n\s*director(?:y|ies):\s*(\S+)?/g),
    ].map((m) => `${m[1]} ${m[2] ?? ''}`.trim());
    for (const want of ['npm /', 'docker /docker', 'github-actions /']) {
      assert.ok(entries.includes(want), `dependabot has "${want}" (found: ${entries.join(', ')})`);
    }
  });

  test('every ignored vulnerability has a reason and an expiry', () => {
    const text = readFileSync(join(root, '.trivyignore.yaml'), 'utf8');
    const problems = trivyIgnoreProblems(text);
    assert.deepEqual(problems, []);
    // The checker rejects entries without a statement or expiry, so an undocumented entry cannot slip in.
    const bad = `${text.replace('vulnerabilities: []', 'vulnerabilities:\n  - id: CVE-2099-0001')}\n`;
    assert.ok(trivyIgnoreProblems(bad).length > 0, 'an entry without reason or expiry is reported');
  });
});

// Entries of Trivy's YAML ignore file, read line by line (the file keeps to the simple block form).
function trivyIgnoreProblems(text: string): string[] {
  const problems: string[] = [];
  const body = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l) && l.trim() !== '')
    .join('\n');
  if (/^vulnerabilities:\s*\[\]\s*$/m.test(body) && body.trim().split('\n').length === 1) return problems;
  const entries = body.split(/\n\s*-\s+(?=id:)/).slice(1);
  if (!/^vulnerabilities:\s*$/m.test(body) || entries.length === 0) return ['unrecognised ignore file'];
  for (const entry of entries) {
    const id = /id:\s*(\S+)/.exec(entry)?.[1] ?? '?';
    const statement = /statement:\s*(.+)/.exec(entry)?.[1]?.trim() ?? '';
    const expiry = /expired_at:\s*(\d{4}-\d{2}-\d{2})/.exec(entry)?.[1];
    if (statement.length < 10) problems.push(`${id}: no statement saying why it is ignored`);
    if (!expiry || Number.isNaN(Date.parse(expiry))) problems.push(`${id}: no expired_at date`);
  }
  return problems;
}

describe('pipeline: the model is one workflow input, the service is sized for it, the API key stays secret', () => {
  const inputs = asMap(asMap(asMap(pipeline.raw.on).workflow_dispatch).inputs);
  const build = job(pipeline, 'build');
  const buildStep = build.steps.find((s) => /docker build/.test(s.run ?? ''));

  test('model_source, finetune and quantize are inputs, empty or off by default (a push ships the default)', () => {
    assert.deepEqual(asMap(inputs.model_source), {
      description: asMap(inputs.model_source).description,
      type: 'string',
      default: '',
    });
    assert.equal(asMap(inputs.finetune).type, 'boolean');
    assert.equal(asMap(inputs.finetune).default, false);
    assert.deepEqual(asMap(inputs.quantize).options, ['none', 'q8_0']);
    assert.equal(asMap(inputs.quantize).default, 'none');
  });

  test('inputs reach scripts only through env, never spliced into a run script', () => {
    for (const w of [pipeline, janitor]) {
      for (const j of w.jobs.values()) {
        for (const s of j.steps) {
          assert.doesNotMatch(s.run ?? '', /\$\{\{/, `${j.id} / ${s.name}: no expression inside run`);
        }
      }
    }
    const check = build.steps.find((s) => s.id === 'model');
    assert.ok(check);
    assert.deepEqual(envOf(check), {
      MODEL_SOURCE: expr('inputs.model_source'),
      FINETUNE: expr('inputs.finetune'),
      QUANTIZE: expr('inputs.quantize'),
    });
  });

  test('the checked choice reaches docker build as build arguments, the Hub token as a BuildKit secret', () => {
    assert.ok(buildStep);
    const run = buildStep.run ?? '';
    for (const arg of ['MODEL_SOURCE', 'FINETUNE', 'QUANTIZE'])
      assert.match(run, new RegExp(`--build-arg ${arg}="\\$\\{${arg}\\}"`));
    assert.match(run, /--secret id=hf_token,env=HF_TOKEN/);
    assert.doesNotMatch(run, /--build-arg HF_TOKEN/);
    const env = envOf(buildStep);
    assert.equal(env.HF_TOKEN, expr('secrets.HF_TOKEN'));
    assert.equal(env.MODEL_SOURCE, expr('steps.model.outputs.model_source'));
  });

  test('the model check refuses anything but the documented sources (run with bash, as Actions does)', () => {
    const check = build.steps.find((s) => s.id === 'model');
    const dir = mkdtempSync(join(tmpdir(), 'model-input-'));
    try {
      const run = (env: Record<string, string>) => {
        const out = join(dir, 'out');
        writeFileSync(out, '');
        const r = spawnSync('bash', ['-e', '-c', check?.run ?? 'exit 9'], {
          encoding: 'utf8',
          env: {
            PATH: process.env.PATH,
            GITHUB_OUTPUT: out,
            GITHUB_STEP_SUMMARY: join(dir, 'summary'),
            ...env,
          },
        });
        return { code: r.status, out: readFileSync(out, 'utf8'), err: `${r.stdout}${r.stderr}` };
      };
      const push = run({ MODEL_SOURCE: '', FINETUNE: '', QUANTIZE: '' });
      assert.equal(push.code, 0, push.err);
      assert.equal(push.out, 'model_source=\nfinetune=false\nquantize=\n');
      const distil = run({ MODEL_SOURCE: 'hf:distilgpt2', FINETUNE: 'false', QUANTIZE: 'q8_0' });
      assert.equal(distil.out, 'model_source=hf:distilgpt2\nfinetune=false\nquantize=q8_0\n');
      for (const bad of ['distilgpt2', 'https://example.com/m', 'hf:x;rm -rf /', '../models/x', 'hf:a b']) {
        const r = run({ MODEL_SOURCE: bad, FINETUNE: 'false', QUANTIZE: 'none' });
        assert.equal(r.code, 1, bad);
        assert.match(r.err, /::error::model_source/);
      }
      assert.equal(
        run({ MODEL_SOURCE: '', FINETUNE: 'true', QUANTIZE: 'none' }).code,
        1,
        'finetune needs a source',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('build sizes the service from the model in the image; deploy records the size for Terraform', () => {
    const size = build.steps.find((s) => s.id === 'size');
    assert.ok(size);
    assert.match(
      size.run ?? '',
      /node \.github\/scripts\/size-service\.mjs model-in-image "\$\{args\[@\]\}"/,
    );
    const outputs = asMap(build.raw.outputs);
    for (const name of ['cpu', 'memory', 'model_weights_bytes', 'model_worker_bytes', 'parameters'])
      assert.equal(outputs[name], expr(`steps.size.outputs.${name}`));
    const deploy = job(pipeline, 'deploy');
    assert.ok(deploy.needs.includes('build'));
    const record = deploy.steps.find((s) => /jq -n/.test(s.run ?? ''));
    assert.ok(record);
    assert.match(
      record.run ?? '',
      /cpu: \$cpu, memory: \$memory, model_weights_bytes: \$weights, model_worker_bytes: \$worker/,
    );
    assert.equal(envOf(record).MEMORY, expr('needs.build.outputs.memory'));
  });

  test('the API key becomes a Secret Manager version from stdin; only its secret id and version are recorded', () => {
    const deploy = job(pipeline, 'deploy');
    const record = deploy.steps.find((s) => /jq -n/.test(s.run ?? ''));
    const run = record?.run ?? '';
    assert.equal(envOf(record as StepModel).API_KEY, expr('secrets.API_KEY'));
    assert.match(
      run,
      /printf '%s' "\$\{API_KEY\}" \| gcloud secrets versions add "\$\{API_KEY_SECRET\}" [^\n]*\\\n\s*--data-file=-/,
    );
    assert.match(run, /api_key_secret: \$key_secret, api_key_secret_version: \$key_version/);
    assert.doesNotMatch(run, /--arg \w+ "\$\{API_KEY\}"/, 'the key itself is never recorded');
    assert.doesNotMatch(runs(deploy), /TF_VAR_|-var[= ]\S*api_key/i);
  });

  test('smoke sends the key and checks the model asked for', () => {
    const smoke = job(pipeline, 'smoke');
    assert.ok(smoke.needs.includes('build'));
    const step = smoke.steps.find((s) => /smoke-test\.sh/.test(s.run ?? ''));
    assert.ok(step);
    const env = envOf(step);
    assert.equal(env.API_KEY, expr('secrets.API_KEY'));
    assert.equal(env.EXPECT_MODEL_SOURCE, expr('needs.build.outputs.model_source'));
    assert.equal(env.EXPECT_PARAMETERS, expr('needs.build.outputs.parameters'));
    assert.equal(environmentOf(smoke), 'google-cloud', 'where the API_KEY secret lives');
  });
});
