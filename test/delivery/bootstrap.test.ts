// Checks terraform/bootstrap with an HCL parser: every API enabled before anything uses it, each of the deployer's
// rights bound where it is used (and listed in docs/deploy.md), a runtime account whose one right is reading the
// API key secret (whose values never pass through Terraform), Workload Identity
// that admits only the repository's protected branch in its GitHub Environment, and a private, pruned state bucket.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  allResources,
  type Json,
  loadModule,
  locals,
  obj,
  repoRoot,
  resources,
  tf,
  validationRegex,
  variable,
} from './hcl-model.js';

const { doc } = await loadModule(join(repoRoot, 'terraform/bootstrap'));
const all = allResources(doc);
const deployer = tf('local.deployer_member');
const deployerMember = String(locals(doc).deployer_member);

// Every binding, whatever resource type grants it: where (the resource it is bound on), role and member.
type Binding = { address: string; on: string; role: string; member: string; condition: Json | undefined };
function bindings(): Binding[] {
  const out: Binding[] = [];
  for (const [address, block] of all) {
    if (!/_iam_(member|binding)$/.test(address.split('.')[0] ?? '')) continue;
    const on = String(
      block.service_account_id ??
        block.repository ??
        block.bucket ??
        block.secret_id ??
        block.project ??
        block.name ??
        '',
    );
    const members = block.member !== undefined ? [block.member] : ((block.members as unknown[]) ?? []);
    for (const member of members) {
      out.push({
        address,
        on,
        role: String(block.role),
        member: String(member),
        condition: block.condition as Json | undefined,
      });
    }
  }
  return out;
}

// Evaluates the provider's attribute_condition for one token's claims. It must be a conjunction of
// `assertion.CLAIM == "VALUE"` tests; anything else (an `||`, a function) is refused, not guessed at.
function admits(condition: string, vars: Record<string, string>, claims: Record<string, string>): boolean {
  const text = condition.replace(/\$\{var\.(\w+)\}/g, (_m, name: string) => {
    const value = vars[name];
    if (value === undefined) throw new Error(`condition uses var.${name}, which the test does not set`);
    return value;
  });
  return text.split(' && ').every((clause) => {
    const m = /^assertion\.(\w+) == "([^"\\]*)"$/.exec(clause.trim());
    if (!m) throw new Error(`unsupported clause in attribute_condition: ${clause}`);
    return claims[m[1] ?? ''] === m[2];
  });
}

const granted = bindings();

describe('bootstrap: APIs first', () => {
  const services = (locals(doc).services as string[]) ?? [];

  test('every API the pipeline and the bootstrap call is enabled', () => {
    for (const api of [
      'artifactregistry.googleapis.com',
      'cloudresourcemanager.googleapis.com',
      'iam.googleapis.com',
      'iamcredentials.googleapis.com',
      'run.googleapis.com',
      'secretmanager.googleapis.com',
      'storage.googleapis.com',
      'sts.googleapis.com',
    ]) {
      assert.ok(services.includes(api), `${api} is enabled`);
    }
    const enabled = resources(doc, 'google_project_service').enabled ?? {};
    assert.equal(enabled.for_each, tf('toset(local.services)'));
    assert.equal(enabled.disable_on_destroy, false, 'destroying the bootstrap leaves the APIs on');
  });

  test('every other resource depends on the APIs explicitly (IAM resources included)', () => {
    let checked = 0;
    for (const [address, block] of all) {
      if (address.startsWith('google_project_service.')) continue;
      assert.ok(
        ((block.depends_on as string[]) ?? []).includes(tf('google_project_service.enabled')),
        `${address} depends_on google_project_service.enabled`,
      );
      checked++;
    }
    console.log(`# ${checked} resources wait for the APIs`);
    assert.ok(checked >= 12);
  });
});

describe('bootstrap: least privilege', () => {
  const toDeployer = granted.filter((b) => b.member === deployer);

  test('the deployer holds exactly the rights its steps use, each bound where it is used', () => {
    const summary = toDeployer.map((b) => `${b.role} on ${b.on}`).sort();
    console.log(`# deployer: ${summary.join('; ')}`);
    assert.deepEqual(summary, [
      `${tf('google_project_iam_custom_role.cloud_run_deployer.name')} on ${tf('var.project_id')}`,
      `roles/artifactregistry.repoAdmin on ${tf('google_artifact_registry_repository.images.name')}`,
      `roles/iam.serviceAccountUser on ${tf('google_service_account.runtime.name')}`,
      `roles/secretmanager.secretVersionManager on ${tf('google_secret_manager_secret.api_key.secret_id')}`,
      `roles/storage.objectAdmin on ${tf('google_storage_bucket.state.name')}`,
    ]);
    assert.equal(deployerMember, `serviceAccount:${tf('google_service_account.deployer.email')}`);
  });

  test('no project-wide account rights, no run.admin, no project-wide Artifact Registry role', () => {
    for (const b of granted.filter((x) => x.address.startsWith('google_project_iam_'))) {
      assert.doesNotMatch(b.role, /^roles\/(iam\.|run\.admin|artifactregistry\.|owner|editor)/, b.address);
    }
    for (const b of granted) {
      assert.notEqual(b.role, 'roles/iam.serviceAccountAdmin', `${b.address} grants serviceAccountAdmin`);
      assert.notEqual(b.role, 'roles/iam.serviceAccountTokenCreator', `${b.address} grants token creation`);
    }
  });

  test('the Cloud Run role holds service and revision rights only (Cloud Run has no resource-name conditions)', () => {
    const role = resources(doc, 'google_project_iam_custom_role').cloud_run_deployer ?? {};
    const permissions = (locals(doc).cloud_run_deployer_permissions as string[]) ?? [];
    assert.equal(role.permissions, tf('local.cloud_run_deployer_permissions'));
    for (const p of permissions) {
      assert.match(
        p,
        /^run\.(services\.\w+|revisions\.(get|list)|operations\.get)$/,
        `${p} is a service right`,
      );
    }
    // What terraform apply/destroy and the by-name cleanup call: create, read, update, delete, list, and the
    // invoker policy (both public access modes need setIamPolicy).
    for (const p of ['create', 'get', 'list', 'update', 'delete', 'getIamPolicy', 'setIamPolicy']) {
      assert.ok(permissions.includes(`run.services.${p}`), `run.services.${p}`);
    }
  });

  test('Artifact Registry: repoAdmin on the repository, the predefined role that deletes versions and tags', () => {
    const repo = resources(doc, 'google_artifact_registry_repository_iam_member').deployer_images ?? {};
    assert.equal(repo.role, 'roles/artifactregistry.repoAdmin');
    assert.equal(repo.location, tf('google_artifact_registry_repository.images.location'));
    assert.equal(repo.repository, tf('google_artifact_registry_repository.images.name'));
  });

  test('the runtime account may read the API key secret and nothing else, and only the deployer may act as it', () => {
    const runtimeMember = /google_service_account\.runtime\.(email|member)/;
    assert.deepEqual(
      granted.filter((b) => runtimeMember.test(b.member)).map((b) => `${b.role} on ${b.on}`),
      [`roles/secretmanager.secretAccessor on ${tf('google_secret_manager_secret.api_key.secret_id')}`],
      'one grant to the runtime account: accessor on the one secret',
    );
    const actAs = granted.filter((b) => b.role === 'roles/iam.serviceAccountUser');
    assert.deepEqual(
      actAs.map((b) => `${b.member} on ${b.on}`),
      [`${deployer} on ${tf('google_service_account.runtime.name')}`],
    );
  });

  test('docs/deploy.md has a roles table naming every role bound here', () => {
    const docs = readFileSync(join(repoRoot, 'docs/deploy.md'), 'utf8');
    const rows = docs.split('\n').filter((l) => l.startsWith('|'));
    const roleId = String(resources(doc, 'google_project_iam_custom_role').cloud_run_deployer?.role_id);
    for (const b of granted) {
      const role = b.role.startsWith('roles/') ? b.role : roleId;
      assert.ok(
        rows.some((r) => r.includes(`\`${role}\``)),
        `docs/deploy.md's table lists ${role} (${b.address})`,
      );
    }
  });
});

describe('bootstrap: Workload Identity admits protected code only', () => {
  const provider = resources(doc, 'google_iam_workload_identity_pool_provider').github ?? {};
  const condition = String(provider.attribute_condition);
  const vars = {
    github_repository_id: '111111',
    github_repository_owner_id: '222222',
    github_branch: 'main',
    github_environment: 'google-cloud',
  };
  const main = { repository_id: '111111', repository_owner_id: '222222', ref: 'refs/heads/main' };

  test('the condition checks numeric repository and owner ids, the branch and the environment', () => {
    for (const claim of ['repository_id', 'repository_owner_id', 'ref', 'environment']) {
      assert.match(condition, new RegExp(`assertion\\.${claim} == "`), `checks ${claim}`);
    }
    assert.doesNotMatch(condition, /assertion\.repository ==|\|\|/, 'no name match, no alternatives');
    assert.equal(variable(doc, 'github_branch').default, 'main');
    assert.ok(validationRegex(doc, 'github_repository_id').test('123456789'));
    assert.ok(!validationRegex(doc, 'github_repository_id').test('owner/name'));
  });

  test('it admits a main-branch job in the environment and refuses every other token', () => {
    assert.ok(admits(condition, vars, { ...main, environment: 'google-cloud' }), 'main, in the environment');
    const refused: [string, Record<string, string>][] = [
      ['another branch', { ...main, ref: 'refs/heads/feature', environment: 'google-cloud' }],
      ['a pull request', { ...main, ref: 'refs/pull/7/merge', environment: 'google-cloud' }],
      ['a job outside the environment', main],
      ['another environment', { ...main, environment: 'staging' }],
      ['another repository', { ...main, repository_id: '333333', environment: 'google-cloud' }],
      ['a re-registered owner', { ...main, repository_owner_id: '444444', environment: 'google-cloud' }],
    ];
    for (const [what, claims] of refused) assert.ok(!admits(condition, vars, claims), `refuses ${what}`);
  });

  test('impersonation is granted to the repository id, and the ids are mapped for it', () => {
    const mapping = obj(provider.attribute_mapping);
    assert.equal(mapping['attribute.repository_id'], 'assertion.repository_id');
    assert.equal(mapping['google.subject'], 'assertion.sub');
    const wi = granted.filter((b) => b.role === 'roles/iam.workloadIdentityUser');
    assert.equal(wi.length, 1);
    assert.equal(wi[0]?.on, tf('google_service_account.deployer.name'));
    assert.match(wi[0]?.member ?? '', /\/attribute\.repository_id\/\$\{var\.github_repository_id\}$/);
    assert.equal(obj(provider.oidc).issuer_uri, 'https://token.actions.githubusercontent.com');
  });
});

describe('bootstrap: state bucket, images and region', () => {
  test('the state bucket is private, versioned, and deletes old versions after a while', () => {
    const bucket = resources(doc, 'google_storage_bucket').state ?? {};
    assert.equal(bucket.public_access_prevention, 'enforced');
    assert.equal(bucket.uniform_bucket_level_access, true);
    assert.equal(obj(bucket.versioning).enabled, true);
    const rules = (bucket.lifecycle_rule as Json[] | undefined) ?? [];
    const prune = rules.find((r) => obj(r.action).type === 'Delete');
    assert.ok(prune, 'a lifecycle rule deletes objects');
    const condition = obj(prune.condition);
    assert.equal(condition.with_state, 'ARCHIVED', 'only replaced or deleted versions, never the live state');
    assert.equal(condition.days_since_noncurrent_time, tf('var.state_versions_kept_days'));
    assert.ok(Number(variable(doc, 'state_versions_kept_days').default) >= 7);
  });

  test('images are deleted by destroy; a cleanup policy removes any that outlive a week', () => {
    const repo = resources(doc, 'google_artifact_registry_repository').images ?? {};
    const policy = obj(repo.cleanup_policies);
    assert.equal(policy.action, 'DELETE');
    assert.equal(obj(policy.condition).tag_state, 'ANY', 'tagged images too');
  });

  test('the region rule accepts every region name, europe-west10 and europe-west12 included', () => {
    const region = validationRegex(doc, 'region');
    for (const name of ['europe-west1', 'europe-west10', 'europe-west12', 'northamerica-northeast2']) {
      assert.ok(region.test(name), name);
    }
    assert.ok(!region.test('europe-west'));
  });
});

describe('bootstrap: the API key secret', () => {
  test('the secret is created without a value: no version resource here nor in the per-run module', async () => {
    const secret = resources(doc, 'google_secret_manager_secret').api_key ?? {};
    assert.equal(secret.secret_id, tf('var.api_key_secret_id'));
    assert.ok(obj(obj(secret.replication).auto), 'automatic replication');
    const perRun = await loadModule(join(repoRoot, 'terraform'));
    for (const module of [doc, perRun.doc]) {
      assert.deepEqual(
        Object.keys(resources(module, 'google_secret_manager_secret_version')),
        [],
        'a version resource would put the key in the state',
      );
      assert.deepEqual(Object.keys(obj(obj(module.data).google_secret_manager_secret_version_access)), []);
    }
    // The environment's variables name the secret; the pipeline adds versions to it.
    assert.equal(
      obj(obj(doc.output).github_variables).value &&
        (obj(obj(doc.output).github_variables).value as Json).GCP_API_KEY_SECRET,
      tf('google_secret_manager_secret.api_key.secret_id'),
    );
  });

  test('the deployer manages versions of this secret only, and holds no right to read a value', () => {
    const onSecret = granted.filter((b) => b.address.startsWith('google_secret_manager_secret_iam_'));
    assert.deepEqual(
      onSecret.map((b) => `${b.role} → ${b.member}`).sort(),
      [
        `roles/secretmanager.secretAccessor → serviceAccount:${tf('google_service_account.runtime.email')}`,
        `roles/secretmanager.secretVersionManager → ${deployer}`,
      ].sort(),
    );
    for (const b of granted.filter((x) => x.member === deployer))
      assert.doesNotMatch(b.role, /secretmanager\.(secretAccessor|admin)$/, b.address);
  });
});
