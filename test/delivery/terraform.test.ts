// Checks the Terraform with an HCL parser: destroyable Cloud Run v2 service, probes on /ready and /health, limits,
// a cost cap, a runtime identity without roles, public access behind a variable, per-run names, ephemeral labels.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from '@cdktf/hcl2json';

type Json = { [key: string]: unknown };

// A Terraform interpolation as hcl2json writes it: tf('var.cpu') is "${var.cpu}".
const tf = (expression: string): string => `\${${expression}}`;
const root = join(import.meta.dirname, '../..');

// Merges every *.tf file of a module into one JSON document, block kinds concatenated.
async function loadModule(dir: string): Promise<{ doc: Json; text: string }> {
  const doc: Json = {};
  let text = '';
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.tf'))) {
    const source = readFileSync(join(dir, file), 'utf8');
    text += source;
    const parsed = (await parse(file, source)) as Json;
    for (const [kind, blocks] of Object.entries(parsed)) {
      if (Array.isArray(blocks)) doc[kind] = [...((doc[kind] as unknown[]) ?? []), ...blocks];
      else {
        const into = (doc[kind] ?? {}) as Json;
        for (const [key, value] of Object.entries(blocks as Json)) {
          // variable/output: name → blocks; resource/data: type → name → blocks.
          into[key] = Array.isArray(value) ? value : { ...((into[key] as Json) ?? {}), ...(value as Json) };
        }
        doc[kind] = into;
      }
    }
  }
  return { doc, text };
}

function obj(value: unknown): Json {
  return Array.isArray(value) ? ((value[0] ?? {}) as Json) : ((value ?? {}) as Json);
}

function resources(doc: Json, type: string): Record<string, Json> {
  const byName = obj(doc.resource)[type] as Record<string, unknown[]> | undefined;
  return Object.fromEntries(Object.entries(byName ?? {}).map(([name, blocks]) => [name, obj(blocks)]));
}

const { doc, text } = await loadModule(join(root, 'terraform'));
const services = resources(doc, 'google_cloud_run_v2_service');
const service = obj(Object.values(services)[0]);
const template = obj(service.template);
const container = obj(template.containers);
const variables = obj(doc.variable) as Record<string, unknown>;
const locals = obj(doc.locals);

describe('terraform: the Cloud Run v2 service', () => {
  test('exactly one service, and terraform destroy can delete it', () => {
    assert.equal(Object.keys(services).length, 1);
    assert.equal(
      service.deletion_protection,
      false,
      'deletion_protection = false (the provider default is true)',
    );
  });

  test('startup probe on /ready, liveness probe on /health, both on the container port', () => {
    const port = obj(container.ports).container_port;
    const startup = obj(obj(container.startup_probe).http_get);
    const liveness = obj(obj(container.liveness_probe).http_get);
    assert.equal(startup.path, '/ready');
    assert.equal(liveness.path, '/health');
    assert.equal(startup.port, port);
    assert.equal(liveness.port, port);
    assert.equal(port, 8000);
  });

  test('CPU and memory limits, max instances as a cost guard, ingress set', () => {
    const limits = obj(obj(container.resources).limits);
    assert.equal(limits.cpu, tf('var.cpu'));
    assert.equal(limits.memory, tf('var.memory'));
    assert.equal(obj(variables.memory).default, '512Mi');
    assert.equal(obj(variables.cpu).default, '1');
    assert.equal(obj(template.scaling).max_instance_count, tf('var.max_instances'));
    const maxDefault = obj(variables.max_instances).default as number;
    assert.ok(maxDefault >= 1 && maxDefault <= 5, `max_instances default ${maxDefault} is a small cap`);
    assert.equal(typeof service.ingress, 'string');
  });

  test('runs as a dedicated service account that holds no IAM roles', () => {
    const accounts = resources(doc, 'google_service_account');
    assert.equal(Object.keys(accounts).length, 1);
    const [name] = Object.keys(accounts);
    assert.equal(template.service_account, `\${google_service_account.${name}.email}`);
    const roleGrants = Object.keys(obj(doc.resource)).filter(
      (type) =>
        /_iam_(member|binding|policy)$/.test(type) && type !== 'google_cloud_run_v2_service_iam_member',
    );
    assert.deepEqual(roleGrants, [], 'no project, account or other IAM grants');
    assert.doesNotMatch(
      text,
      new RegExp(`serviceAccount:\\$\\{google_service_account\\.${name}`),
      'no role names it',
    );
  });

  test('public access is a variable, on by default: allUsers invoker or the invoker check disabled', () => {
    assert.equal(obj(variables.public_access).default, true);
    assert.equal(obj(variables.public_access).type, tf('bool'));
    const invoker = obj(Object.values(resources(doc, 'google_cloud_run_v2_service_iam_member'))[0]);
    assert.equal(invoker.role, 'roles/run.invoker');
    assert.equal(invoker.member, 'allUsers');
    assert.match(String(invoker.count), /var\.public_access &&/);
    assert.match(String(service.invoker_iam_disabled), /var\.public_access &&/);
  });

  test('every name carries the environment id, so parallel runs never collide', () => {
    assert.match(String(locals.name), /\$\{var\.environment_id\}/);
    assert.equal(service.name, tf('local.name'));
    const account = obj(Object.values(resources(doc, 'google_service_account'))[0]);
    assert.match(String(account.account_id), /\$\{var\.environment_id\}/);
  });

  test('labels mark the service ephemeral with an expiry, on the service and its revisions', () => {
    const labels = obj(locals.labels);
    assert.equal(labels.ephemeral, 'true');
    assert.match(String(labels['expires-at']), /local\.expires_at/);
    assert.match(String(locals.expires_at), /var\.created_at \+ var\.ttl_hours \* 3600/);
    assert.equal(service.labels, tf('local.labels'));
    assert.equal(template.labels, tf('local.labels'));
  });

  test('every variable has a description, and every input a validation', () => {
    for (const [name, blocks] of Object.entries(variables)) {
      const v = obj(blocks);
      assert.ok(String(v.description ?? '').length > 10, `${name} has a description`);
      if (v.type !== tf('bool')) assert.ok(v.validation, `${name} is validated`);
    }
    assert.equal(obj(variables.project_id).default, undefined, 'no project id default');
    assert.match(
      String(obj(obj(variables.image).validation).condition),
      /@sha256:/,
      'images deploy by digest',
    );
  });

  test('outputs cloud_run_url from the service', () => {
    assert.equal(obj(obj(doc.output).cloud_run_url).value, tf('google_cloud_run_v2_service.app.uri'));
  });

  test('the provider is pinned and state goes to a GCS backend configured at init time', () => {
    const tf = obj(doc.terraform);
    const google = obj(obj(tf.required_providers).google);
    assert.equal(google.source, 'hashicorp/google');
    assert.match(String(google.version), /^~> 6\.(\d+)$/, 'pinned to a 6.x minor or later');
    assert.ok(Number(/~> 6\.(\d+)/.exec(String(google.version))?.[1]) >= 8, '6.8+ has invoker_iam_disabled');
    const gcs = obj(obj(tf.backend).gcs);
    assert.deepEqual(gcs, {}, 'bucket and prefix come from -backend-config');
  });
});

describe('terraform: bootstrap', () => {
  test('Workload Identity is restricted to one repository and the state bucket is private', async () => {
    const { doc: boot } = await loadModule(join(root, 'terraform/bootstrap'));
    const provider = obj(Object.values(resources(boot, 'google_iam_workload_identity_pool_provider'))[0]);
    assert.match(
      String(provider.attribute_condition),
      /assertion\.repository == "\$\{var\.github_repository\}"/,
    );
    const bucket = obj(Object.values(resources(boot, 'google_storage_bucket'))[0]);
    assert.equal(bucket.public_access_prevention, 'enforced');
    assert.equal(bucket.uniform_bucket_level_access, true);
    const binding = obj(Object.values(resources(boot, 'google_service_account_iam_member'))[0]);
    assert.match(String(binding.member), /attribute\.repository\/\$\{var\.github_repository\}/);
  });
});
