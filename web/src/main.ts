// The chat page: wires the composer, the streamed conversation, the settings form and the model card.
import { authHeaders, type ChatRequest, type ChatTurn, type StreamOutcome, streamChat } from './chat-api.js';
import { byId, h } from './dom.js';
import { renderModelCard, renderModelCardError } from './model-card.js';
import { readModelInfo } from './model-info.js';
import {
  DEFAULT_LIMITS,
  DEFAULT_SETTINGS,
  type Limits,
  MAX_SEED,
  readSettings,
  type SettingName,
  type Settings,
} from './settings.js';

const conversation = byId('conversation', HTMLElement);
const emptyHint = byId('empty-hint', HTMLElement);
const composer = byId('composer', HTMLFormElement);
const prompt = byId('prompt', HTMLTextAreaElement);
const sendButton = byId('send', HTMLButtonElement);
const stopButton = byId('stop', HTMLButtonElement);
const newChatButton = byId('new-chat', HTMLButtonElement);
const settingsForm = byId('settings', HTMLFormElement);
const settingsError = byId('settings-error', HTMLElement);
const resetButton = byId('reset-settings', HTMLButtonElement);
const modelCard = byId('model-card', HTMLElement);
const apiKeyField = byId('api-key', HTMLInputElement);
/** Where the API key is kept: this tab's session storage, never sent anywhere but this server. */
const API_KEY_STORAGE = 'tiny-llm-api-key';
const fields: Record<SettingName, HTMLInputElement> = {
  temperature: byId('temperature', HTMLInputElement),
  topK: byId('top-k', HTMLInputElement),
  topP: byId('top-p', HTMLInputElement),
  maxTokens: byId('max-tokens', HTMLInputElement),
  seed: byId('seed', HTMLInputElement),
};

/** Completed turns sent back with every request, so the model sees the whole conversation. */
const history: ChatTurn[] = [];
let defaults: Settings = { ...DEFAULT_SETTINGS };
let limits: Limits = { ...DEFAULT_LIMITS };
let active: AbortController | null = null;

function showSettings(s: Settings): void {
  fields.temperature.value = String(s.temperature);
  fields.topK.value = String(s.topK);
  fields.topP.value = String(s.topP);
  fields.maxTokens.value = String(s.maxTokens);
  fields.seed.value = s.seed === null ? '' : String(s.seed);
  clearSettingsError();
}

function applyLimits(): void {
  fields.maxTokens.max = String(limits.maxTokens);
  fields.topK.max = String(limits.vocabSize);
  fields.seed.max = String(MAX_SEED);
}

function clearSettingsError(): void {
  for (const input of Object.values(fields)) input.removeAttribute('aria-invalid');
  settingsError.textContent = '';
}

function currentSettings(): Settings | null {
  const raw = Object.fromEntries(Object.entries(fields).map(([k, input]) => [k, input.value])) as Record<
    SettingName,
    string
  >;
  const result = readSettings(raw, limits);
  clearSettingsError();
  if (result.ok) return result.settings;
  fields[result.field].setAttribute('aria-invalid', 'true');
  settingsError.textContent = result.message;
  fields[result.field].focus();
  return null;
}

function nearBottom(): boolean {
  return conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 48;
}

function scrollToEnd(): void {
  conversation.scrollTop = conversation.scrollHeight;
}

interface Bubble {
  root: HTMLElement;
  text: Text;
  meta: HTMLElement;
}

function addBubble(role: 'user' | 'bot', content: string): Bubble {
  emptyHint.hidden = true;
  const text = document.createTextNode(content);
  const meta = h('p', { className: 'msg-meta' });
  const root = h(
    'article',
    { className: `msg msg-${role}`, attrs: { 'aria-label': role === 'user' ? 'You said' : 'Model replied' } },
    h('p', { className: 'msg-who', attrs: { 'aria-hidden': 'true' } }, role === 'user' ? 'You' : 'tiny-llm'),
    h('p', { className: 'msg-text' }, text),
    meta,
  );
  conversation.append(root);
  scrollToEnd();
  return { root, text, meta };
}

function setBusy(busy: boolean): void {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
  newChatButton.disabled = busy;
  conversation.setAttribute('aria-busy', String(busy));
}

function describeEnd(outcome: StreamOutcome, seconds: number, tokens: number): string {
  const took = `${seconds.toFixed(1)} s`;
  if (outcome.kind === 'stopped') return `Stopped after ${took}`;
  if (outcome.kind !== 'done') return '';
  const count = outcome.usage?.completion_tokens ?? tokens;
  const why = outcome.finishReason === 'length' ? ' · reached max tokens' : '';
  return `${count} token${count === 1 ? '' : 's'} · ${took}${why}`;
}

async function send(): Promise<void> {
  const userText = prompt.value.trim();
  if (userText === '' || active !== null) return;
  const settings = currentSettings();
  if (settings === null) return;

  const request: ChatRequest = {
    messages: [...history, { role: 'user', content: userText }],
    max_tokens: settings.maxTokens,
    temperature: settings.temperature,
    top_k: settings.topK,
    top_p: settings.topP,
    ...(settings.seed === null ? {} : { seed: settings.seed }),
  };
  addBubble('user', userText);
  const bot = addBubble('bot', '');
  bot.root.dataset.state = 'streaming';
  prompt.value = '';
  const controller = new AbortController();
  active = controller;
  setBusy(true);

  let raw = '';
  let deltas = 0;
  const started = performance.now();
  const outcome = await streamChat(
    request,
    controller.signal,
    (piece) => {
      const follow = nearBottom();
      raw += piece;
      deltas++;
      // The model's reply usually starts with the space after "Bot:"; hide leading blanks.
      bot.text.data = raw.trimStart();
      if (follow) scrollToEnd();
    },
    undefined,
    apiKeyField.value,
  );
  const seconds = (performance.now() - started) / 1000;
  active = null;
  setBusy(false);

  const reply = raw.trim();
  if (outcome.kind === 'error') {
    bot.root.dataset.state = 'error';
    if (reply === '') {
      bot.root.classList.add('msg-error');
      bot.root.setAttribute('role', 'alert');
      bot.text.data = outcome.message;
      // Nothing was answered: put the message back so retrying is one key press.
      if (prompt.value === '') prompt.value = userText;
    } else {
      bot.meta.append(h('span', { className: 'msg-error-note', attrs: { role: 'alert' } }, outcome.message));
      history.push({ role: 'user', content: userText }, { role: 'assistant', content: reply });
    }
  } else {
    bot.root.dataset.state = outcome.kind;
    if (reply === '') bot.text.data = outcome.kind === 'stopped' ? '(stopped before any text)' : '(no reply)';
    bot.meta.textContent = describeEnd(outcome, seconds, deltas);
    history.push({ role: 'user', content: userText }, { role: 'assistant', content: reply });
  }
  if (nearBottom()) scrollToEnd();
  if (document.activeElement === document.body || document.activeElement === stopButton) prompt.focus();
}

function stop(): void {
  active?.abort();
}

function newChat(): void {
  if (active !== null) return;
  history.length = 0;
  conversation.replaceChildren(emptyHint);
  emptyHint.hidden = false;
  prompt.focus();
}

async function loadModel(): Promise<void> {
  try {
    const response = await fetch('/api/model', {
      headers: { accept: 'application/json', ...authHeaders(apiKeyField.value) },
    });
    if (response.status === 401) {
      renderModelCardError(modelCard, "Enter the server's API key under Settings to see the model card.");
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const info = readModelInfo(await response.json());
    if (info.config) limits = { maxTokens: info.config.n_positions, vocabSize: info.config.vocab_size };
    const d = info.defaults;
    defaults = {
      temperature: d.temperature ?? DEFAULT_SETTINGS.temperature,
      topK: d.top_k ?? DEFAULT_SETTINGS.topK,
      topP: d.top_p ?? DEFAULT_SETTINGS.topP,
      maxTokens: Math.min(d.max_tokens ?? DEFAULT_SETTINGS.maxTokens, limits.maxTokens),
      seed: null,
    };
    applyLimits();
    showSettings(defaults);
    renderModelCard(modelCard, info);
  } catch {
    renderModelCardError(modelCard, 'Model details are unavailable right now.');
  }
}

composer.addEventListener('submit', (event) => {
  event.preventDefault();
  void send();
});
prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    void send();
  } else if (event.key === 'Escape' && active !== null) {
    event.preventDefault();
    stop();
  }
});
stopButton.addEventListener('click', stop);
newChatButton.addEventListener('click', newChat);
resetButton.addEventListener('click', () => showSettings(defaults));
settingsForm.addEventListener('submit', (event) => event.preventDefault());
settingsForm.addEventListener('input', clearSettingsError);
apiKeyField.addEventListener('change', () => {
  try {
    if (apiKeyField.value.trim() === '') sessionStorage.removeItem(API_KEY_STORAGE);
    else sessionStorage.setItem(API_KEY_STORAGE, apiKeyField.value.trim());
  } catch {
    // Storage may be off (private mode): the key then lasts until the page is reloaded.
  }
  void loadModel();
});
try {
  apiKeyField.value = sessionStorage.getItem(API_KEY_STORAGE) ?? '';
} catch {
  apiKeyField.value = '';
}

applyLimits();
showSettings(defaults);
setBusy(false);
void loadModel();
