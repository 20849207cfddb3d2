// Drives the chat page in Chromium (test/helpers/browser.ts picks which) against the built server
// (`bin/tiny-llm.js serve`) and a model: streaming, stop, seeds, errors, XSS.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test as nodeTest } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { type ChromiumChoice, chooseChromium, launchChromium } from '../helpers/browser.js';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { repoRoot } from '../helpers/fixtures.js';
import { failIfMissing, skipOutsideCi } from '../helpers/needs.js';
import { startStreamGate } from './stream-gate.js';

const artifacts = path.join(repoRoot, 'artifacts');
/** A long context so a reply runs long enough to be stopped mid-stream. */
const CONTEXT = 512;

const choice = await chooseChromium();
const missing = 'missing' in choice ? choice.missing : null;
// With no Chromium to drive, every test here is skipped outside CI, with the reason (and fails under CI).
const skip = skipOutsideCi(missing);
const test = (name: string, fn: () => Promise<void>) => nodeTest(name, { skip }, fn);

let browser: Browser;
let page: Page;
let baseUrl: string;
let server: BuiltServer;
const pageProblems: string[] = [];

/** The built server on 127.0.0.1 with a random-init tiny GPT-2 and the real tokenizer; resolves once /ready is 200. */
async function startServer(): Promise<string> {
  server = await startBuiltServer(
    { workers: 2, systemPrompt: 'You are a friendly chatbot.' },
    { nPositions: CONTEXT },
  );
  return server.url;
}

before(async () => {
  if (skip) return;
  failIfMissing(missing);
  // Bundle the page from the current sources, so this test never runs against a stale dist/web.
  execFileSync(process.execPath, [path.join(repoRoot, 'scripts', 'build-web.mjs')], { stdio: 'ignore' });
  baseUrl = await startServer();
  const chosen = choice as ChromiumChoice;
  browser = await launchChromium(chosen);
  console.log(`browser: ${chosen.source}, version ${browser.version()}`);
  page = await browser.newPage({ viewport: { width: 1280, height: 860 }, colorScheme: 'light' });
  // Generous: the suite may share a loaded machine with other tests.
  page.setDefaultTimeout(60_000);
  // CSP violations and script errors surface as console errors or page errors.
  page.on('console', (msg) => {
    // Failed chat requests (and the keyed server's 401s) are provoked on purpose below; anything else is a problem.
    const url = msg.location().url;
    const deliberate =
      url.endsWith('/v1/chat/completions') || (url.endsWith('/api/model') && msg.text().includes('401'));
    if (msg.type() === 'error' && !deliberate) pageProblems.push(`${msg.text()} (${msg.location().url})`);
  });
  page.on('pageerror', (err) => pageProblems.push(err.message));
  await page.goto(baseUrl);
  await page.waitForSelector('#model-card[aria-busy="false"]');
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const botBubbles = () => page.locator('.msg-bot');
const lastBot = () => botBubbles().last();

/** Starts a fresh conversation and sets the sampling fields named. */
async function freshChat(
  settings: { seed?: string; maxTokens?: string; temperature?: string } = {},
): Promise<void> {
  await page.click('#new-chat');
  if (settings.seed !== undefined) await page.fill('#seed', settings.seed);
  if (settings.maxTokens !== undefined) await page.fill('#max-tokens', settings.maxTokens);
  if (settings.temperature !== undefined) await page.fill('#temperature', settings.temperature);
}

/** Types a message, presses Enter, and waits until the reply has ended; returns the reply bubble's text. */
async function sendAndWait(text: string): Promise<string> {
  const before = await botBubbles().count();
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
  await page.waitForFunction((n) => {
    const bots = document.querySelectorAll('.msg-bot');
    return bots.length > n && bots[bots.length - 1].getAttribute('data-state') !== 'streaming';
  }, before);
  return (await lastBot().locator('.msg-text').textContent()) ?? '';
}

test('the page loads CSP-clean, with a labelled form and the model card from /api/model', async () => {
  assert.equal(await page.locator('#conversation').getAttribute('aria-live'), 'polite');
  for (const id of ['prompt', 'temperature', 'top-k', 'top-p', 'max-tokens', 'seed', 'api-key']) {
    assert.equal(await page.locator(`label[for="${id}"]`).count(), 1, `#${id} has a label`);
  }
  const card = (await page.locator('#model-card').textContent()) ?? '';
  assert.match(card, /Parameters/);
  assert.match(card, new RegExp(`Context\\s*${CONTEXT} tokens`));
  assert.match(card, /No training report/, 'a random-init model has no training report');
  assert.equal(await page.locator('[style]').count(), 0, 'no style attributes');
  assert.equal(
    await page.locator('#max-tokens').getAttribute('max'),
    String(CONTEXT),
    'max tokens limited by the context',
  );
  const csp = (await fetch(baseUrl)).headers.get('content-security-policy') ?? '';
  assert.match(csp, /script-src 'self'/, 'the page is served under a strict CSP');
  assert.match(csp, /style-src 'self'/);
  assert.deepEqual(pageProblems, [], 'no console errors or CSP violations');
});

test('Shift+Enter adds a newline; Enter sends; the reply grows event by event as it streams', async () => {
  // Served through a gate that passes each stream event on only once the page shows the text so far: the
  // page must show every piece while the rest is held back, and a busy machine cannot merge the events into
  // one read (which the page would rightly show at once).
  const gate = await startStreamGate(baseUrl, (length) =>
    page
      .waitForFunction(
        (n) => {
          const texts = document.querySelectorAll('.msg-bot .msg-text');
          return texts[texts.length - 1]?.textContent?.length === n;
        },
        length,
        { timeout: 10_000 },
      )
      .then(
        () => true,
        () => false,
      ),
  );
  try {
    await page.goto(gate.url);
    await page.waitForSelector('#model-card[aria-busy="false"]');
    await freshChat({ maxTokens: '60' });
    await page.fill('#prompt', 'Hello');
    await page.press('#prompt', 'Shift+Enter');
    await page.type('#prompt', 'there');
    assert.equal(await page.inputValue('#prompt'), 'Hello\nthere');
    assert.equal(await page.locator('.msg-user').count(), 0, 'Shift+Enter did not send');

    await page.press('#prompt', 'Enter');
    await page.waitForSelector('.msg-bot:not([data-state="streaming"])');
    assert.equal(await page.locator('.msg-user .msg-text').textContent(), 'Hello\nthere');
    assert.equal(await page.inputValue('#prompt'), '', 'the box is cleared after sending');
    assert.equal(await lastBot().getAttribute('data-state'), 'done');
    const reply = (await lastBot().locator('.msg-text').textContent()) ?? '';
    console.log(
      `reply ${reply.length} chars, shown at lengths ${gate.steps.join(', ')} with the rest held back`,
    );
    assert.ok(reply.length > 0, 'a reply arrived');
    assert.deepEqual(gate.misses, [], 'lengths the page did not show while the rest was held back');
    assert.ok(gate.steps.length >= 3, `the reply grew in ${gate.steps.length} steps, not 3 or more`);
    assert.equal(gate.steps.at(-1), reply.length, 'the last step is the whole reply');
    assert.match((await lastBot().locator('.msg-meta').textContent()) ?? '', /tokens? ·/);
  } finally {
    await page.goto(baseUrl);
    await page.waitForSelector('#model-card[aria-busy="false"]');
    await gate.close();
  }
});

test('the next message sends the whole conversation as history', async () => {
  await freshChat({ maxTokens: '20' });
  const firstReply = (await sendAndWait('Hello\nthere')).trim();
  const request = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions'));
  await sendAndWait('And then?');
  const body = (await request).postDataJSON() as {
    messages: { role: string; content: string }[];
    stream: boolean;
  };
  assert.equal(body.stream, true);
  assert.deepEqual(body.messages, [
    { role: 'user', content: 'Hello\nthere' },
    { role: 'assistant', content: firstReply },
    { role: 'user', content: 'And then?' },
  ]);
});

test('Stop ends the stream mid-reply and keeps the partial text', async () => {
  // The whole reply for this seed, for comparison.
  await freshChat({ seed: '4242', maxTokens: '450' });
  const full = await sendAndWait('Tell me everything about soup');
  assert.equal(await lastBot().getAttribute('data-state'), 'done');

  // Same seed again; press Stop as soon as the first text shows (from inside the page: a round trip from the
  // test could arrive after a ~1 ms/token model has finished).
  await freshChat();
  await page.evaluate(() => {
    const observer = new MutationObserver(() => {
      const text = document.querySelector('.msg-bot[data-state="streaming"] .msg-text');
      if ((text?.textContent?.length ?? 0) > 0) {
        observer.disconnect();
        document.querySelector<HTMLButtonElement>('#stop')?.click();
      }
    });
    observer.observe(document.getElementById('conversation')!, {
      childList: true,
      subtree: true,
      characterData: true,
    });
  });
  const partial = await sendAndWait('Tell me everything about soup');
  console.log(`full reply ${full.length} chars; stopped at ${partial.length} chars`);
  assert.equal(await lastBot().getAttribute('data-state'), 'stopped');
  assert.ok(partial.length > 0, 'the partial reply is kept');
  assert.ok(partial.length < full.length, 'it stopped before the end');
  assert.ok(full.startsWith(partial), 'the partial reply is the start of the full one');
  await page.waitForTimeout(300);
  assert.equal(await lastBot().locator('.msg-text').textContent(), partial, 'no text arrives after stopping');
  assert.match((await lastBot().locator('.msg-meta').textContent()) ?? '', /Stopped/);
  assert.equal(await page.locator('#send').isEnabled(), true);
  assert.equal(await page.locator('#stop').isEnabled(), false);

  // The partial reply is part of the conversation the next message sends.
  const request = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions'));
  await sendAndWait('Go on');
  const body = (await request).postDataJSON() as { messages: { role: string; content: string }[] };
  assert.deepEqual(body.messages[1], { role: 'assistant', content: partial.trim() });
});

test('the same seed gives the same reply; another seed gives a different one', async () => {
  await freshChat({ seed: '1234', maxTokens: '40', temperature: '1' });
  const a = await sendAndWait('What should I cook tonight?');
  await freshChat();
  const b = await sendAndWait('What should I cook tonight?');
  await freshChat({ seed: '99' });
  const c = await sendAndWait('What should I cook tonight?');
  console.log(
    `seed 1234: ${JSON.stringify(a)}\nseed 1234: ${JSON.stringify(b)}\nseed 99:   ${JSON.stringify(c)}`,
  );
  assert.ok(a.length > 0);
  assert.equal(b, a);
  assert.notEqual(c, a);
});

test('a 503 shows the busy message with the Retry-After wait and gives the text back', async () => {
  await freshChat({ seed: '' });
  await page.route('**/v1/chat/completions', (route) =>
    route.fulfill({
      status: 503,
      headers: { 'retry-after': '7' },
      contentType: 'application/json',
      body: JSON.stringify({
        error: {
          message: 'Too many requests are waiting.',
          type: 'server_error',
          param: null,
          code: 'queue_full',
        },
      }),
    }),
  );
  try {
    await sendAndWait('Are you there?');
  } finally {
    await page.unroute('**/v1/chat/completions');
  }
  const error = page.locator('.msg-error');
  assert.equal(await error.getAttribute('role'), 'alert');
  assert.equal(
    await error.locator('.msg-text').textContent(),
    'The server is busy right now. Please try again in 7 seconds.',
  );
  assert.equal(await page.inputValue('#prompt'), 'Are you there?', 'the message is back in the box');
});

test('429, a network failure and bad settings each get a clear message', async () => {
  await freshChat();
  await page.route('**/v1/chat/completions', (route) =>
    route.fulfill({
      status: 429,
      headers: { 'retry-after': '3' },
      contentType: 'application/json',
      body: JSON.stringify({
        error: { message: 'Rate limit', type: 'rate_limit_error', param: null, code: null },
      }),
    }),
  );
  await sendAndWait('one');
  assert.match((await lastBot().textContent()) ?? '', /too quickly.*in 3 seconds/);
  await page.unroute('**/v1/chat/completions');

  await page.route('**/v1/chat/completions', (route) => route.abort('connectionrefused'));
  await sendAndWait('two');
  assert.match((await lastBot().textContent()) ?? '', /Could not reach the server/);
  await page.unroute('**/v1/chat/completions');

  await page.fill('#temperature', '5');
  await page.fill('#prompt', 'three');
  await page.press('#prompt', 'Enter');
  assert.equal(
    await page.locator('#settings-error').textContent(),
    'Temperature must be a number from 0 to 2.',
  );
  assert.equal(await page.locator('#temperature').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.inputValue('#prompt'), 'three', 'nothing was sent');
  await page.click('#reset-settings');
  assert.equal(await page.inputValue('#temperature'), '1');
});

test('a reply containing <script> and markup shows as text and runs nothing', async () => {
  await freshChat();
  const evil = '<script>window.__pwned=1</script><b>x</b><img src=x onerror="window.__pwned=2">';
  const sse = [
    { choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] },
    { choices: [{ index: 0, delta: { content: ` ${evil.slice(0, 20)}` } }] },
    { choices: [{ index: 0, delta: { content: evil.slice(20) } }] },
    { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
  ]
    .map((o) => `data: ${JSON.stringify(o)}\n\n`)
    .join('');
  await page.route('**/v1/chat/completions', (route) =>
    route.fulfill({ status: 200, contentType: 'text/event-stream', body: `${sse}data: [DONE]\n\n` }),
  );
  try {
    assert.equal(await sendAndWait('say something nasty'), evil);
  } finally {
    await page.unroute('**/v1/chat/completions');
  }
  assert.equal(await page.locator('#conversation b, #conversation script, #conversation img').count(), 0);
  assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
});

test('a model with a training report shows its figures and the loss curve as an SVG polyline', async () => {
  // The real /api/model body, with the training summary a trained model directory adds.
  const real = (await (await fetch(`${baseUrl}/api/model`)).json()) as Record<string, unknown>;
  const curve = Array.from({ length: 120 }, (_, i) => [i * 5, 3 + 8 * Math.exp(-i / 25)]);
  const training = {
    final_loss: 3.02,
    steps: 600,
    wall_time_s: 95,
    tokens_per_s: 8400,
    loss_curve: curve,
    preset: 'default',
  };
  await page.route('**/api/model', (route) => route.fulfill({ json: { ...real, training } }));
  try {
    await page.reload();
    await page.waitForSelector('#model-card[aria-busy="false"]');
  } finally {
    await page.unroute('**/api/model');
  }
  const card = page.locator('#model-card');
  assert.match(
    (await card.textContent()) ?? '',
    /Final loss\s*3\.0200.*Steps\s*600.*Training time\s*1 min 35 s/s,
  );
  const line = await page.evaluate(() => {
    const polyline = document.querySelector('#model-card svg polyline');
    return (
      polyline && { ns: polyline.namespaceURI, points: polyline.getAttribute('points')?.split(' ').length }
    );
  });
  assert.deepEqual(line, { ns: 'http://www.w3.org/2000/svg', points: curve.length });
  const [lastStep, lastLoss] = curve[curve.length - 1];
  assert.equal(
    await card.locator('svg title').textContent(),
    `Training loss from 11.000 at step 0 to ${lastLoss.toFixed(3)} at step ${lastStep}`,
  );
  await mkdir(artifacts, { recursive: true });
  await card.screenshot({ path: path.join(artifacts, 'model-card.png') });
  await page.reload();
  await page.waitForSelector('#model-card[aria-busy="false"]');
});

test('on a server started with an API key, the page asks for it, then chats with it', async () => {
  const KEY = 'sk-page-test-key';
  const keyed = await startBuiltServer({ workers: 1, env: { API_KEY: KEY } }, { nPositions: CONTEXT });
  try {
    await page.goto(keyed.url);
    await page.waitForSelector('#model-card[aria-busy="false"]');
    assert.match((await page.locator('#model-card').textContent()) ?? '', /API key under Settings/);
    await page.fill('#prompt', 'hello?');
    await page.press('#prompt', 'Enter');
    await page.waitForSelector('.msg-bot[data-state="error"]');
    assert.equal(
      await lastBot().locator('.msg-text').textContent(),
      'This server needs an API key. Enter it under Settings → API key.',
    );
    await page.fill('#api-key', 'sk-wrong');
    await page.dispatchEvent('#api-key', 'change');
    await freshChat({ seed: '3', maxTokens: '8' });
    await page.fill('#prompt', 'hello?');
    await page.press('#prompt', 'Enter');
    await page.waitForSelector('.msg-bot[data-state="error"]');
    assert.match((await lastBot().locator('.msg-text').textContent()) ?? '', /did not accept that API key/);
    await page.fill('#api-key', KEY);
    await page.dispatchEvent('#api-key', 'change');
    await page.waitForFunction(() =>
      /Parameters/.test(document.querySelector('#model-card')?.textContent ?? ''),
    );
    await freshChat({ seed: '3', maxTokens: '8' });
    const reply = await sendAndWait('hello?');
    assert.equal(await lastBot().getAttribute('data-state'), 'done', `reply: ${reply}`);
    // The key is kept for this tab: a reload still has it.
    await page.reload();
    assert.equal(await page.inputValue('#api-key'), KEY);
  } finally {
    await page.goto(baseUrl);
    await page.waitForSelector('#model-card[aria-busy="false"]');
    await keyed.close();
  }
});

test('screenshots in light and dark mode', async () => {
  await freshChat({ seed: '7', maxTokens: '40' });
  await sendAndWait('Hi! What can you cook?');
  await sendAndWait('Something with tomatoes, please.');
  await mkdir(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, 'chat-page.png') });
  await page.emulateMedia({ colorScheme: 'dark' });
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, 'rgb(15, 18, 22)', 'the dark palette applies');
  await page.screenshot({ path: path.join(artifacts, 'chat-page-dark.png') });
  await page.emulateMedia({ colorScheme: 'light' });
  assert.deepEqual(pageProblems, [], 'no console errors or CSP violations during the whole run');
});
