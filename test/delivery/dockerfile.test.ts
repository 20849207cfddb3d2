// Static checks of docker/Dockerfile and the stand-in script: both base images pinned by digest (and kept current
// by Dependabot), one supported Node major in both stages, the stand-ins tagged with the Dockerfile's FROM names,
// and a runtime stage that is non-root with exec-form CMD.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { dockerfileForStandins } from '../../scripts/container/standin-dockerfile.js';

const dockerfile = readFileSync('docker/Dockerfile', 'utf8');
const standins = readFileSync('scripts/container/make-standins.sh', 'utf8');

/** FROM lines in order, as `{ image, digest, alias }` (image is name:tag, digest the pin if any). */
function froms(text: string): { image: string; digest: string | null; alias: string | null }[] {
  return [...text.matchAll(/^FROM\s+([^\s@]+)(?:@(\S+))?(?:\s+AS\s+(\S+))?\s*$/gim)].map((m) => ({
    image: m[1],
    digest: m[2] ?? null,
    alias: m[3] ?? null,
  }));
}

function shellDefault(name: string): string {
  const m = standins.match(new RegExp(`^${name}="\\$\\{${name}:-([^}]+)\\}"`, 'm'));
  assert.ok(m, `make-standins.sh sets ${name}`);
  return m[1];
}

function shellConst(name: string): string {
  const m = standins.match(new RegExp(`^${name}="([^"]+)"`, 'm'));
  assert.ok(m, `make-standins.sh sets ${name}`);
  return m[1];
}

describe('docker/Dockerfile', () => {
  const stages = froms(dockerfile);

  it('pins both base images by digest, under the tag that names their line', () => {
    for (const stage of stages) {
      assert.match(stage.digest ?? '', /^sha256:[0-9a-f]{64}$/, `${stage.image} is pinned by digest`);
      assert.match(stage.image, /:[\w.-]+$/, `${stage.image} keeps its tag, so Dependabot knows the line`);
    }
    const dependabot = readFileSync('.github/dependabot.yml', 'utf8');
    assert.match(
      dependabot,
      /package-ecosystem:\s*docker\s*\n\s*directory:\s*\/docker\b/,
      'Dependabot moves the pins',
    );
  });

  it('the stand-in build sees the same Dockerfile with only the digest pins removed', () => {
    const { text, pins } = dockerfileForStandins(dockerfile);
    assert.deepEqual(
      pins,
      stages.map((s) => ({ image: s.image, digest: s.digest })),
    );
    assert.doesNotMatch(text, /@sha256:/);
    assert.equal(text, dockerfile.replace(/@sha256:[0-9a-f]{64}/g, ''), 'nothing else changes');
    assert.deepEqual(
      froms(text).map((s) => `${s.image} ${s.alias}`),
      stages.map((s) => `${s.image} ${s.alias}`),
    );
  });

  it('has a node build stage and a distroless runtime stage of the same, still supported, Node major', () => {
    assert.equal(stages.length, 2, `expected 2 FROM lines, got ${JSON.stringify(stages)}`);
    const build = stages[0].image.match(/^node:(\d+)-bookworm-slim$/);
    const runtime = stages[1].image.match(/^gcr\.io\/distroless\/nodejs(\d+)-debian12:nonroot$/);
    assert.ok(build, `build stage ${stages[0].image} is node:<major>-bookworm-slim`);
    assert.ok(runtime, `runtime stage ${stages[1].image} is distroless nodejs<major>-debian12:nonroot`);
    assert.equal(build[1], runtime[1], 'both stages run the same Node major');
    // Node 20 reached end of life in April 2026; LTS lines are even majors.
    const major = Number(build[1]);
    assert.ok(major >= 22 && major % 2 === 0, `Node ${major} is not a supported LTS line`);
  });

  it('runs as a numeric non-root user with an exec-form CMD (node is PID 1 and receives SIGTERM)', () => {
    const runtimePart = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    // The last USER is the one the container runs as (build steps before it may run as root).
    const user = [...runtimePart.matchAll(/^USER\s+(\d+)(?::(\d+))?\s*$/gm)].at(-1);
    assert.ok(user, 'runtime stage sets USER uid[:gid]');
    assert.notEqual(Number(user[1]), 0, 'runtime user is not root');
    assert.ok(runtimePart.indexOf(user[0]) < runtimePart.indexOf('\nCMD'), 'USER comes before CMD');
    const cmd = runtimePart.match(/^CMD\s+(.+)$/m);
    assert.ok(cmd, 'runtime stage has a CMD');
    const args = JSON.parse(cmd[1]) as unknown;
    assert.ok(Array.isArray(args) && args.every((a) => typeof a === 'string'), 'CMD is exec form');
    assert.ok(!/\b(sh|bash)\b/.test(cmd[1]), 'CMD starts no shell');
  });

  it("writes the CLI bundle's V8 code cache with the runtime's own Node, as root, before the service user takes over", () => {
    const runtimePart = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const runs = [...runtimePart.matchAll(/^RUN\s+(\[.*\])\s*$/gm)].map((m) => JSON.parse(m[1]) as string[]);
    assert.deepEqual(runs, [['/nodejs/bin/node', 'scripts/warm-code-cache.mjs']]);
    // After bin/, dist/ and node_modules are in place, as root (the base image's nonroot user cannot write the
    // root-owned dist/: a cache it tried to write would be missing), before the image drops to its service user.
    const at = (text: string) => runtimePart.indexOf(text);
    const warm = at('warm-code-cache.mjs"]');
    for (const copied of ['/app/bin', '/app/dist', '/app/node_modules'])
      assert.ok(at(`COPY --from=build ${copied} `) >= 0 && at(`COPY --from=build ${copied} `) < warm, copied);
    const root = at('\nUSER 0:0');
    assert.ok(root >= 0 && root < warm, 'the cache step must run as root');
    assert.ok(warm < at('\nUSER 65532'), 'the service user must be set after the cache step');
  });

  it('builds the model and serves with the built CLI, bin/tiny-llm.js (what the tests start)', () => {
    assert.match(dockerfile, /^\s+node bin\/tiny-llm\.js create-model --train --preset default/m);
    const runtimePart = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    assert.deepEqual(JSON.parse(runtimePart.match(/^CMD\s+(.+)$/m)?.[1] ?? 'null'), [
      'bin/tiny-llm.js',
      'serve',
    ]);
  });

  it('trains the model in the build stage behind the quality gate', () => {
    const buildPart = dockerfile.slice(0, dockerfile.lastIndexOf('\nFROM '));
    assert.match(buildPart, /create-model --train --preset default[^\n]*\\?\n?\s*--max-loss/);
    // The shipped model must have learned its corpus (issue 6: ≤ 1.0 nats/token), not merely trained.
    const gate = Number(buildPart.match(/^ARG MAX_LOSS=(\S+)$/m)?.[1]);
    assert.ok(gate > 0 && gate <= 1.0, `MAX_LOSS gate ${gate} is in (0, 1.0]`);
  });
});

describe('docker/Dockerfile: the model is a build choice', () => {
  const buildPart = dockerfile.slice(0, dockerfile.lastIndexOf('\nFROM '));
  const runtimePart = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const modelStep = buildPart.slice(buildPart.indexOf('RUN --mount=type=secret,id=hf_token'));

  it('MODEL_SOURCE (default empty: the default preset trained), FINETUNE and QUANTIZE are build arguments', () => {
    assert.match(buildPart, /^ARG MODEL_SOURCE=""$/m);
    assert.match(buildPart, /^ARG FINETUNE="false"$/m);
    assert.match(buildPart, /^ARG QUANTIZE=""$/m);
    assert.match(
      modelStep,
      /if \[ -z "\$\{MODEL_SOURCE\}" \]; then\s*\\\s*node bin\/tiny-llm\.js create-model --train --preset default/,
    );
    assert.match(
      modelStep,
      /create-model --from-pretrained "\$\{MODEL_SOURCE\}" --train [^\n]*\\\s*--max-loss/,
    );
    assert.match(modelStep, /create-model --from-pretrained "\$\{MODEL_SOURCE\}" --model-dir \/app\/model/);
    assert.match(modelStep, /case "\$\{QUANTIZE\}" in ""\|q8_0\) ;; \*\)[^\n]*exit 1/, 'QUANTIZE is checked');
    // QUANTIZE=q8_0 stores the model as int8: every create-model of the step gets --quantize, and the step
    // checks the int8 weights file was written (the float32 one otherwise).
    const creates = modelStep.split('node bin/tiny-llm.js create-model').slice(1);
    assert.equal(creates.length, 3);
    for (const create of creates)
      assert.match(create.split(';')[0], /\$\{QUANTIZE:\+--quantize "\$\{QUANTIZE\}"\}/, create);
    assert.match(
      modelStep,
      /if \[ -n "\$\{QUANTIZE\}" \]; then test -s \/app\/model\/model\.q8_0\.gguf; else test -s \/app\/model\/model\.safetensors; fi/,
    );
    // The image holds the int8 weights, which the server loads as they are: no serve-time quantising is set.
    assert.doesNotMatch(runtimePart, /QUANTIZE/);
  });

  it('the Hub token is a BuildKit secret read in the one step that downloads: never an ARG, an ENV or a layer', () => {
    assert.doesNotMatch(dockerfile, /^(ARG|ENV)\b[^\n]*(HF_TOKEN|hf_token)/m);
    assert.equal(dockerfile.match(/--mount=type=secret,id=hf_token/g)?.length, 1);
    assert.match(
      modelStep,
      /if \[ -s \/run\/secrets\/hf_token \]; then HF_TOKEN="\$\(cat \/run\/secrets\/hf_token\)" && export HF_TOKEN; fi/,
    );
    assert.doesNotMatch(modelStep, /echo[^\n]*HF_TOKEN|set -x/, 'never printed');
    const ignore = readFileSync('.dockerignore', 'utf8').split('\n');
    for (const pattern of ['.env', '.env.*', '*credentials*.json'])
      assert.ok(ignore.includes(pattern), pattern);
    assert.ok(!ignore.includes('models'), 'a model directory in models/ reaches the build context');
  });
});

describe('scripts/container/make-standins.sh', () => {
  it('tags its stand-ins with the Dockerfile FROM names and ships the same Node major', () => {
    const stages = froms(dockerfile);
    const build = shellConst('BUILD_IMAGE');
    const runtime = shellConst('RUNTIME_IMAGE');
    // buildah resolves short names to docker.io/library/…; the runtime name is already fully qualified.
    assert.equal(build, `docker.io/library/${stages[0].image}`);
    assert.equal(runtime, stages[1].image);
    const nodeVersion = shellDefault('NODE_VERSION');
    const major = stages[0].image.match(/^node:(\d+)-/)?.[1];
    assert.equal(nodeVersion.split('.')[0], major, `stand-in Node ${nodeVersion} matches node:${major}`);
  });
});
