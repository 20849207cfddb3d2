// Checks the per-run Terraform module with an HCL parser: destroyable Cloud Run v2 service, probes on /ready and
// /health, limits, a cost cap, the bootstrap's role-less runtime identity, public access behind a variable (and
// recorded by the pipeline), per-run names, ephemeral labels, region names that Google actually uses.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadModule, obj, repoRoot, resources, tf, validationRegex } from './hcl-model.js';

const root = repoRoot;

const { doc } = await loadModule(join(root, 'terraform'));
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

  test('runs as the runtime account it is given, and grants no role to anyone but the invoker', () => {
    assert.equal(template.service_account, tf('var.runtime_service_account'));
    assert.deepEqual(
      Object.keys(resources(doc, 'google_service_account')),
      [],
      'no per-run service account: the deployer may not create accounts',
    );
    const roleGrants = Object.keys(obj(doc.resource)).filter(
      (type) =>
        /_iam_(member|binding|policy)$/.test(type) && type !== 'google_cloud_run_v2_service_iam_member',
    );
    assert.deepEqual(roleGrants, [], 'no project, account or other IAM grants');
    const email = validationRegex(doc, 'runtime_service_account');
    assert.ok(email.test('tiny-llm-runtime@example-project.iam.gserviceaccount.com'));
    assert.ok(!email.test('tiny-llm-runtime@example-project.iam.gserviceaccount.com.evil.example'));
  });

  test('public access is a variable, on by default: the invoker check disabled, or an optional allUsers binding', () => {
    assert.equal(obj(variables.public_access).default, true);
    assert.equal(obj(variables.public_access).type, tf('bool'));
    // Google's recommended way, and the one domain-restricted sharing allows.
    assert.equal(obj(variables.public_access_mode).default, 'invoker_check_disabled');
    assert.match(
      String(service.invoker_iam_disabled),
      /var\.public_access && var\.public_access_mode == "invoker_check_disabled"/,
    );
    const invoker = obj(Object.values(resources(doc, 'google_cloud_run_v2_service_iam_member'))[0]);
    assert.equal(invoker.role, 'roles/run.invoker');
    assert.equal(invoker.member, 'allUsers');
    assert.match(String(invoker.count), /var\.public_access && var\.public_access_mode == "iam_binding"/);
  });

  test('region names are matched by pattern, so newer regions such as europe-west10 and europe-west12 pass', () => {
    const region = validationRegex(doc, 'region');
    const real = [
      'europe-west1',
      'europe-west10',
      'europe-west12',
      'europe-north2',
      'us-central1',
      'us-east5',
      'northamerica-northeast2',
      'southamerica-west1',
      'me-central2',
      'africa-south1',
      'asia-southeast1',
      'australia-southeast2',
    ];
    for (const name of real) assert.ok(region.test(name), `${name} is accepted`);
    for (const name of [
      'europe-west',
      'Europe-west1',
      'europe_west1',
      'us-central1-a',
      'europe-west0',
      'eu',
    ]) {
      assert.ok(!region.test(name), `${name} is rejected`);
    }
  });

  test('every name carries the environment id, so parallel runs never collide', () => {
    assert.match(String(locals.name), /\$\{var\.environment_id\}/);
    assert.equal(service.name, tf('local.name'));
    // destroy-environment.sh deletes a service that state lost by this same name.
    assert.equal(locals.name, `tiny-llm-${tf('var.environment_id')}`);
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
