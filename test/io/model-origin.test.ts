// readModelOrigin: what /api/model and /v1/models say about where the served model came from, read from the files
// create-model writes (source.json for a pretrained source, training.json for a model made from scratch), and
// never an error for a missing or malformed file.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readModelOrigin } from '../../src/io/model-report.js';

const root = mkdtempSync(join(tmpdir(), 'tiny-llm-origin-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A directory holding only these files. */
function dirWith(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(root, `m${n++}-`));
  for (const [name, value] of Object.entries(files))
    writeFileSync(join(dir, name), typeof value === 'string' ? value : JSON.stringify(value));
  return dir;
}

describe('readModelOrigin', () => {
  it('a Hub source: URI, revision asked for and the commit fetched', async () => {
    const origin = await readModelOrigin(
      dirWith({
        'source.json': {
          uri: 'hf:distilgpt2',
          kind: 'huggingface-hub',
          revision: 'main',
          commit: '2290a62682d06624634c1f46a6ad5be0f47f38aa',
          stored_dtypes: ['F32'],
        },
      }),
    );
    assert.deepEqual(origin, {
      kind: 'huggingface-hub',
      uri: 'hf:distilgpt2',
      revision: 'main',
      commit: '2290a62682d06624634c1f46a6ad5be0f47f38aa',
      preset: null,
      fine_tuned: false,
      description: 'hf:distilgpt2@main (commit 2290a62682d0)',
    });
  });

  it('fine-tuned on the corpus: the source still names it, and says so', async () => {
    const origin = await readModelOrigin(
      dirWith({
        'source.json': { uri: '/app/models/gpt2-local', kind: 'directory' },
        'training.json': { preset: 'fine-tune', trained: true, steps: 200 },
      }),
    );
    assert.equal(origin.kind, 'directory');
    assert.equal(origin.uri, '/app/models/gpt2-local');
    assert.equal(origin.fine_tuned, true);
    assert.equal(origin.description, '/app/models/gpt2-local, fine-tuned');
  });

  it('made from scratch: the preset, trained or not', async () => {
    const trained = await readModelOrigin(dirWith({ 'training.json': { preset: 'default', trained: true } }));
    assert.deepEqual(
      { kind: trained.kind, uri: trained.uri, preset: trained.preset, description: trained.description },
      { kind: 'trained', uri: null, preset: 'default', description: 'trained: preset default' },
    );
    const random = await readModelOrigin(dirWith({ 'training.json': { preset: 'seed', trained: false } }));
    assert.equal(random.kind, 'random-init');
    assert.equal(random.description, 'random init: preset seed');
  });

  it('missing or malformed files make the answer less specific, never an error', async () => {
    assert.equal((await readModelOrigin(dirWith({}))).kind, 'unknown');
    assert.equal((await readModelOrigin(join(root, 'does-not-exist'))).kind, 'unknown');
    const broken = await readModelOrigin(
      dirWith({ 'source.json': '{"uri": ', 'training.json': { preset: 'default', trained: true } }),
    );
    assert.equal(broken.kind, 'trained', 'an unreadable source.json falls back to training.json');
    const odd = await readModelOrigin(dirWith({ 'source.json': { uri: 42, revision: ['x'] } }));
    assert.equal(odd.kind, 'unknown', 'a source.json without a string uri names nothing');
    const array = await readModelOrigin(dirWith({ 'source.json': [1, 2] }));
    assert.equal(array.kind, 'unknown');
  });
});
