// The agent console (DESIGN.md section 7): the wins counter, the chats' live
// notifications with the customer's sidebar, and the report query with its chart.
// Served by `api` at /console/; plain modules, no dependencies, no build step.
//
//  1. Helpers: elements and formatting      7. Notifications: the store
//  2. Session: organization and token        8. Chats view: list and feed
//  3. API client                              9. Sidebar: the customer's orders
//  4. Event streams (SSE over fetch)         10. Reports view
//  5. Connection status                      11. Tabs and routes
//  6. Wins counter                           12. Start

// ---------------------------------------------------------------------------
// 1. Helpers: elements and formatting
// ---------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** An element (an SVG one with `ns`) with attributes, null and false ones left out, and
 *  children. Text is always added as text, never parsed as HTML: no data injects markup. */
function make(ns, tag, attrs = {}, ...children) {
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value != null && value !== false) el.setAttribute(name, value === true ? '' : String(value));
  }
  el.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return el;
}
const h = (...args) => make(null, ...args);
const svg = (...args) => make('http://www.w3.org/2000/svg', ...args);

/** JSON text's value, or null when it is not JSON. */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Milliseconds since the epoch of an instant sent as RFC 3339 text or as a number of
 *  microseconds (how `schemas::values::Timestamp` serializes, e.g. `placed_at`). */
function instantMs(value) {
  if (typeof value === 'number') return Math.floor(value / 1000);
  const ms = typeof value === 'string' ? Date.parse(value) : NaN;
  return Number.isNaN(ms) ? null : ms;
}

const clockFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayClockFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' });
const shortDayFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', timeZone: 'UTC' });

/** A `<time>`: the clock time today, day and time before; the full date as a tooltip. */
function timeEl(value) {
  const ms = instantMs(value);
  if (ms == null) return h('span', {}, '–');
  const at = new Date(ms);
  const today = at.toDateString() === new Date().toDateString();
  return h('time', { datetime: at.toISOString(), title: fullFormat.format(at) },
    (today ? clockFormat : dayClockFormat).format(at));
}

/** An amount exactly as the API wrote it (a decimal string, never through a float) and
 *  its currency. */
function money(amount, currency, attrs = {}) {
  return h('span', { class: 'money' },
    h('span', { class: 'amount', ...attrs }, amount ?? '–'), ' ', h('span', { class: 'currency' }, currency ?? ''));
}

/** Elements joined by a separator: "12.00 EUR + 3.50 USD". */
const joined = (items, separator) => items.flatMap((item, i) => (i ? [separator, item] : [item]));

/** A duration as people say it, in its two largest units: "45 s", "3 min 20 s",
 *  "5 h 2 min", "2 d 4 h". Truncated to the second, as `salesctl report` does. */
function durationText(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '–';
  let rest = Math.floor(seconds);
  if (rest < 1) return '< 1 s';
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60], ['s', 1]]) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0 || parts.length) parts.push([n, unit]);
    if (parts.length === 2) break;
  }
  return parts.filter(([n], i) => i === 0 || n > 0).map(([n, unit]) => `${n} ${unit}`).join(' ');
}

/** `YYYY-MM-DD` plus `days` days, on the calendar (no timezone involved). */
function addDays(ymd, days) {
  const [y, m, d] = ymd.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** Today's date in a timezone (the browser's without one), `YYYY-MM-DD`. */
function todayIn(timeZone) {
  try {
    const parts = new Intl.DateTimeFormat('en', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
      .formatToParts(new Date());
    const part = (type) => parts.find((p) => p.type === type).value;
    return `${part('year')}-${part('month')}-${part('day')}`;
  } catch {
    return todayIn(undefined);
  }
}

const KIND_LABELS = {
  order_created: 'Order created',
  product_added_to_cart: 'Added to cart',
  product_removed_from_cart: 'Removed from cart',
};
const TIMING_LABELS = { during_chat: 'during chat', after_chat: 'after chat' };

// ---------------------------------------------------------------------------
// 2. Session: organization and token
// ---------------------------------------------------------------------------

const SESSION_KEY = 'sales-console-session';

/** The organization and token: from the link's fragment (`#org=ORG&token=JWT`) once,
 *  then from sessionStorage. The fragment is replaced by the route at once so the token
 *  stays neither in the address bar nor in the history. */
function readSession() {
  const link = linkInFragment();
  if (link) {
    history.replaceState(null, '', `${location.pathname}${location.search}#/chats`);
    if (!link.org || !link.token) return null;
    try {
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(link));
    } catch {
      // Storage refused: the session lasts as long as this page.
    }
    return link;
  }
  let saved = null;
  try {
    saved = parseJson(sessionStorage.getItem(SESSION_KEY));
  } catch {
    // Storage refused: nothing saved.
  }
  return saved && saved.org && saved.token ? saved : null;
}

/** The fragment's `{org, token}` when the address is a console link, else null. */
function linkInFragment() {
  const fragment = new URLSearchParams(location.hash.replace(/^#\/?/, ''));
  if (!fragment.has('token') && !fragment.has('org')) return null;
  return { org: fragment.get('org') || '', token: fragment.get('token') || '' };
}

const session = readSession();

// ---------------------------------------------------------------------------
// 3. API client
// ---------------------------------------------------------------------------

/** An answer of the API that is not a success, with its `{error_code, message, field}`. */
class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `the API answered ${status}`);
    this.status = status;
    this.code = (body && body.error_code) || null;
    this.field = (body && body.field) || null;
  }
  get refused() {
    return this.status === 401 || this.status === 403;
  }
}

/** The error of an answer; a body that is not the API's JSON (a proxy's page) leaves the
 *  status to speak. */
async function errorOf(response) {
  return new ApiError(response.status, parseJson(await response.text().catch(() => '')));
}

/** `/v1/orgs/{org}{path}` with query parameters (an array value repeats its name). */
function orgUrl(path, params = {}) {
  const url = new URL(`/v1/orgs/${encodeURIComponent(session.org)}${path}`, location.origin);
  for (const [name, value] of Object.entries(params)) {
    for (const one of [value].flat()) if (one != null && one !== '') url.searchParams.append(name, one);
  }
  return url;
}

const authHeaders = (more) => ({ Authorization: `Bearer ${session.token}`, ...more });

/** GETs JSON. A refused token stops the whole console (see `sessionRefused`). */
async function getJson(path, params, signal) {
  let response;
  try {
    response = await fetch(orgUrl(path, params), { headers: authHeaders({ Accept: 'application/json' }), signal, cache: 'no-store' });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, { message: `the API cannot be reached (${error.message})` });
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (error.refused) sessionRefused(error.message);
    throw error;
  }
  return response.json();
}

const isAbort = (error) => error && error.name === 'AbortError';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// 4. Event streams: Server-Sent Events over fetch()
// ---------------------------------------------------------------------------
// EventSource cannot send an Authorization header, so this reads text/event-stream
// from a fetch() body. It reconnects after an error or an end with a growing wait,
// sending the last event id received so the server resumes after it: nothing missed,
// nothing repeated.

const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 10_000;
// The server sends keep-alive comments; a connection silent for this long is taken
// for dead (a laptop that slept, a proxy that dropped it without closing).
const SILENCE_MS = 75_000;

/** Parses event-stream lines (the HTML standard's rules) into messages. The last event
 *  id survives reconnections; a half-read message does not. */
function eventParser(onMessage) {
  let type = '';
  let data = null;
  let idBuffer = null;
  const parser = {
    lastEventId: null,
    reset() {
      type = '';
      data = null;
      idBuffer = parser.lastEventId;
    },
    line(line) {
      if (line === '') {
        // The id is taken when its message is complete, even a message without data.
        parser.lastEventId = idBuffer;
        if (data !== null) onMessage({ type: type || 'message', data: data.join('\n'), id: idBuffer });
        type = '';
        data = null;
        return;
      }
      if (line.startsWith(':')) return; // a comment: the server's keep-alive
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') type = value;
      else if (field === 'data') (data ??= []).push(value);
      else if (field === 'id' && !value.includes('\0')) idBuffer = value;
      // `retry:` is not followed: the waits below are the console's own.
    },
  };
  return parser;
}

/** Feeds a body's lines to the parser, calling `onActivity` on every chunk. */
async function readLines(body, parser, onActivity) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onActivity();
    let text = rest + value;
    // A chunk ending in "\r" may end halfway through "\r\n": keep it for the next one.
    const held = text.endsWith('\r') ? '\r' : '';
    if (held) text = text.slice(0, -1);
    const lines = text.split(/\r\n|\r|\n/);
    rest = lines.pop() + held;
    lines.forEach(parser.line);
  }
}

/** Opens a stream of `path` under the organization. `onEvent({type, data, id})` gets each
 *  message but `error`, `onOpen()` each successful connection, `onStatus({state, message,
 *  retryInMs})` the states connecting, live, error, reconnecting and stopped. */
function openEventStream(path, { onEvent, onOpen = () => {}, onStatus }) {
  let closed = false;
  let controller = null;
  let failures = 0;
  let wake = null;
  const parser = eventParser(deliver);
  let problem = null; // the last `event: error` message, shown until the next success

  function deliver(message) {
    if (message.type === 'error') {
      const body = parseJson(message.data) || {};
      problem = body.message || body.error_code || message.data || 'the server reported an error';
      return onStatus({ state: 'error', message: problem });
    }
    problem = null;
    try {
      onEvent(message);
    } catch (error) {
      // One message the console cannot show must not end the stream.
      console.error('sales console: a message could not be shown', message, error);
    }
  }

  /** One connection, read to its end: resolves to `{message}`, what ended it, or to
   *  `{refused: true}`. */
  async function connectOnce() {
    controller = new AbortController();
    let silent = false;
    let silence = null;
    const heard = () => {
      clearTimeout(silence);
      silence = setTimeout(() => { silent = true; controller.abort(); }, SILENCE_MS);
    };
    const headers = authHeaders({ Accept: 'text/event-stream' });
    if (parser.lastEventId != null) headers['Last-Event-ID'] = parser.lastEventId;
    parser.reset();
    onStatus({ state: 'connecting' });
    const opened = Date.now();
    let delivered = false;
    try {
      const response = await fetch(orgUrl(path), { headers, signal: controller.signal, cache: 'no-store' });
      if (!response.ok) {
        const error = await errorOf(response);
        if (error.refused) {
          // Unless another request's refusal has already stopped everything.
          if (!closed) sessionRefused(error.message);
          return { refused: true };
        }
        return { message: error.message };
      }
      if (!(response.headers.get('content-type') || '').startsWith('text/event-stream')) {
        return { message: 'the answer is not an event stream' };
      }
      onStatus({ state: 'live' });
      onOpen();
      heard();
      await readLines(response.body, parser, () => { heard(); delivered = true; });
      return { message: problem || 'the stream ended' };
    } catch (error) {
      if (silent) return { message: `nothing heard for ${SILENCE_MS / 1000} s` };
      return { message: isAbort(error) ? 'closed' : `the API cannot be reached (${error.message})` };
    } finally {
      clearTimeout(silence);
      // A connection that lasted is not a failure in a row: the next wait starts over.
      if (delivered && Date.now() - opened > 5000) failures = 0;
    }
  }

  (async () => {
    while (!closed) {
      const outcome = await connectOnce();
      if (closed || outcome.refused) return;
      const waitMs = Math.min(RETRY_FIRST_MS * 2 ** failures, RETRY_MAX_MS);
      failures += 1;
      onStatus({ state: 'reconnecting', message: outcome.message, retryInMs: waitMs });
      await new Promise((resolve) => { wake = resolve; setTimeout(resolve, waitMs); });
    }
  })();

  return {
    close() {
      closed = true;
      if (controller) controller.abort();
      if (wake) wake();
    },
  };
}

// ---------------------------------------------------------------------------
// 5. Connection status: one line for every stream
// ---------------------------------------------------------------------------

const streams = new Map(); // name → the handle of openEventStream
const streamStates = new Map(); // name → its last status
// The worst state first: that is the one the top bar shows.
const SEVERITY = ['stopped', 'reconnecting', 'error', 'connecting', 'live'];

function setStreamStatus(name, status) {
  streamStates.set(name, status);
  renderConnection();
}

function renderConnection() {
  const states = [...streamStates.values()];
  const worst = SEVERITY.find((s) => states.some((x) => x.state === s)) || 'connecting';
  const shown = states.find((x) => x.state === worst && x.message) || {};
  // An error message from the server is followed by a reconnection: it reads as one.
  const word = worst === 'error' ? 'reconnecting' : worst;
  const wait = shown.retryInMs ? ` in ${Math.round(shown.retryInMs / 1000)} s` : '';
  const el = $('connection-status');
  el.dataset.state = word;
  el.textContent = shown.message ? `${word}${wait}: ${shown.message}` : word;
  el.title = [...streamStates].map(([name, s]) => `${name}: ${s.state}${s.message ? ` (${s.message})` : ''}`).join('\n');
}

/** A refused token (401/403): every stream stops and the page says why; retrying with
 *  the same token cannot help. */
function sessionRefused(message) {
  if (!$('auth-message').hidden) return;
  $('auth-detail').textContent = message;
  $('auth-message').hidden = false;
  for (const [name, stream] of streams) {
    stream.close();
    streamStates.set(name, { state: 'stopped', message });
  }
  renderConnection();
}

// ---------------------------------------------------------------------------
// 6. Wins counter
// ---------------------------------------------------------------------------

const wins = { current: null };

function showWins(answer) {
  const before = wins.current;
  wins.current = answer;
  const count = $('wins-count');
  count.textContent = String(answer.wins);
  $('wins-date').textContent = answer.date;
  $('wins-date').title = `${answer.date} in ${answer.timezone}`;
  if (before && answer.wins > before.wins) {
    // Restart the highlight even when wins come in quick succession.
    count.classList.remove('bumped');
    void count.offsetWidth;
    count.classList.add('bumped');
  }
}

/** Reads the counter; shown unless the stream has already shown a later value (a day's
 *  count only grows). */
async function loadWins() {
  try {
    const answer = await getJson('/wins');
    const shown = wins.current;
    if (!shown || answer.date > shown.date || (answer.date === shown.date && answer.wins >= shown.wins)) {
      showWins(answer);
    }
  } catch (error) {
    if (!error.refused) console.warn('sales console: wins', error.message);
  }
}

function startWinsStream() {
  streams.set('wins', openEventStream('/wins/stream', {
    onEvent(message) {
      if (message.type !== 'wins') return;
      showWins(JSON.parse(message.data));
    },
    onStatus: (status) => setStreamStatus('wins', status),
  }));
}

/** After midnight in the organization's timezone the counter is 0 until the first win,
 *  which no stream message announces: ask again once the day has changed. */
function checkNewDay() {
  const shown = wins.current;
  if (shown && todayIn(shown.timezone) > shown.date) loadWins();
}

// ---------------------------------------------------------------------------
// 7. Notifications: the store
// ---------------------------------------------------------------------------

const RECENT_ON_LOAD = 300; // the org's notifications read at start (the API allows 1000)
const NOTES_PER_CHAT = 100; // a long chat keeps its latest ones
const CHATS_KEPT = 300; // the chats listed, most recent activity first

const store = {
  seen: new Set(), // every notification id received: the list and the stream overlap
  chats: new Map(), // chat id → { id, customerId, notes (oldest first), lastMs, last, unread }
  selected: null, // the chat open in the feed
  feed: { chatId: null, loading: false, error: null },
};
let arrivals = 0; // orders notifications of the same millisecond by arrival

/** Adds one notification; `live` ones (from the stream) count as unread in other chats.
 *  Returns whether it was new. */
function addNotification(note, live) {
  if (!note || !note.notification_id || store.seen.has(note.notification_id)) return false;
  store.seen.add(note.notification_id);
  let chat = store.chats.get(note.chat_id);
  if (!chat) {
    chat = { id: note.chat_id, customerId: note.customer_id, notes: [], lastMs: -Infinity, last: null, unread: 0 };
    store.chats.set(chat.id, chat);
  }
  const entry = { note, ms: instantMs(note.at) ?? Date.now(), order: arrivals++, live };
  chat.notes.push(entry);
  chat.notes.sort((a, b) => a.ms - b.ms || a.order - b.order);
  if (chat.notes.length > NOTES_PER_CHAT) chat.notes.shift();
  if (entry.ms >= chat.lastMs) {
    chat.lastMs = entry.ms;
    chat.last = note;
    chat.customerId = note.customer_id;
  }
  if (live && store.selected !== chat.id) chat.unread += 1;
  return true;
}

/** The chats by most recent activity; the oldest beyond the bound are forgotten. */
function sortedChats() {
  const chats = [...store.chats.values()].sort((a, b) => b.lastMs - a.lastMs || (a.id < b.id ? -1 : 1));
  for (const chat of chats.slice(CHATS_KEPT)) if (chat.id !== store.selected) store.chats.delete(chat.id);
  return chats.filter((chat) => store.chats.has(chat.id));
}

function onLiveNotification(note) {
  if (!addNotification(note, true)) return;
  scheduleChatsRender();
  if (note.kind === 'order_created' && note.customer_id === sidebar.customerId) {
    refreshSidebar(note.order_id);
  }
}

async function loadRecentNotifications() {
  try {
    const { notifications } = await getJson('/notifications', { limit: RECENT_ON_LOAD });
    notifications.forEach((note) => addNotification(note, false));
    scheduleChatsRender();
  } catch (error) {
    if (!error.refused) $('chat-list-empty').textContent = `The chats could not be loaded: ${error.message}`;
  }
}

/** The org's stream is opened first and its recent list read once the stream is open:
 *  the stream starts with new notifications only, so anything in between comes through
 *  one or the other, and the overlap is dropped by id. */
function startNotifications() {
  let listRead = false;
  const readListOnce = () => {
    if (listRead) return;
    listRead = true;
    loadRecentNotifications();
  };
  streams.set('notifications', openEventStream('/notifications/stream', {
    onOpen: readListOnce,
    onEvent(message) {
      if (message.type === 'notification') onLiveNotification(JSON.parse(message.data));
    },
    onStatus(status) {
      setStreamStatus('notifications', status);
      // Without a stream the list is still worth showing.
      if (status.state === 'reconnecting') readListOnce();
    },
  }));
}

// ---------------------------------------------------------------------------
// 8. Chats view: the list and the open chat's feed
// ---------------------------------------------------------------------------

let renderQueued = false;

/** Renders the list and the feed once per frame however many notifications arrived. */
function scheduleChatsRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderChatList();
    renderFeed();
  });
}

function chatRow(chat) {
  const last = chat.last;
  return h('li', {},
    h('a', {
      class: 'chat-row', href: `#/chats/${encodeURIComponent(chat.id)}`, 'data-testid': 'chat-row',
      'data-chat-id': chat.id, 'aria-current': chat.id === store.selected ? 'true' : null,
    },
    h('span', { class: 'chat-id' }, chat.id),
    chat.unread ? h('span', { class: 'badge', 'data-testid': 'unread-badge' }, String(chat.unread),
      h('span', { class: 'visually-hidden' }, ' unread')) : null,
    h('span', { class: 'chat-customer' }, 'Customer ', chat.customerId),
    h('span', { class: `chat-last kind-${last.kind}` }, KIND_LABELS[last.kind] || last.kind, ' · ', timeEl(last.at))));
}

function renderChatList() {
  const list = $('chat-list');
  // Rows are rebuilt: keep the keyboard focus on the row it was on.
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.chatId : null;
  const chats = sortedChats();
  list.replaceChildren(...chats.map(chatRow));
  $('chat-list-empty').hidden = chats.length > 0;
  if (focused != null) {
    const row = [...list.querySelectorAll('.chat-row')].find((r) => r.dataset.chatId === focused);
    if (row) row.focus({ preventScroll: true });
  }
}

/** Up and down arrows move between the rows, Home and End to the ends. */
function onChatListKey(event) {
  const rows = [...$('chat-list').querySelectorAll('.chat-row')];
  const at = rows.indexOf(document.activeElement);
  const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: rows.length - 1 }[event.key];
  if (to === undefined || at < 0 || !rows[to]) return;
  event.preventDefault();
  rows[to].focus();
}

/** A store's thumbnail, or the placeholder when it sent none. A thumbnail that does not
 *  load leaves the frame's placeholder showing, its address kept. */
function thumbnail(url) {
  const usable = typeof url === 'string' && /^https?:\/\//i.test(url);
  const img = h('img', {
    class: 'thumb', 'data-testid': 'item-thumbnail', 'data-placeholder': usable ? null : 'true',
    src: usable ? url : 'placeholder.svg', alt: '', width: 48, height: 48,
    loading: 'lazy', decoding: 'async', referrerpolicy: 'no-referrer',
  });
  if (usable) img.addEventListener('error', () => { img.dataset.broken = 'true'; }, { once: true });
  return h('span', { class: 'thumb-frame' }, img);
}

function itemList(items) {
  return h('ul', { class: 'items' }, items.map((item) =>
    h('li', { class: 'item', 'data-testid': 'notification-item', 'data-product-id': item.product_id },
      thumbnail(item.thumbnail_url),
      h('span', { class: 'item-title' }, item.title),
      h('span', { class: 'item-qty' }, `× ${item.quantity}`),
      h('span', { class: 'item-total' }, money(item.line_total, item.currency)))));
}

function orderBody(note) {
  return [
    h('p', { class: 'note-summary' },
      'Order ', h('strong', { 'data-testid': 'order-number' }, note.order_number ?? note.order_id ?? '–'),
      ' · ', money(note.total, note.currency, { 'data-testid': 'order-total' })),
    itemList(note.items || []),
  ];
}

function cartBody(note) {
  const verb = note.kind === 'product_added_to_cart' ? 'Added' : 'Removed';
  const changed = (note.items || []).map((i) => `${i.title} × ${i.quantity}`).join(', ');
  const lines = note.cart_lines || [];
  const subtotals = note.cart_subtotals || [];
  return [
    changed ? h('p', { class: 'note-summary' }, `${verb}: `, changed) : null,
    h('p', { class: 'note-subheading' }, 'Cart now'),
    lines.length ? itemList(lines) : h('p', { class: 'muted' }, 'The cart is empty.'),
    subtotals.length ? h('p', { class: 'subtotals', 'data-testid': 'cart-subtotals' }, 'Subtotal: ',
      joined(subtotals.map((s) => money(s.amount, s.currency)), ' + ')) : null,
  ];
}

function notificationCard(entry) {
  const note = entry.note;
  const card = h('li', {
    class: `note kind-${note.kind}${entry.live ? ' is-new' : ''}`, 'data-testid': 'notification',
    'data-notification-id': note.notification_id, 'data-kind': note.kind,
  },
  h('header', { class: 'note-head' },
    h('span', { class: 'note-kind' }, KIND_LABELS[note.kind] || note.kind), timeEl(note.at)),
  note.kind === 'order_created' ? orderBody(note) : cartBody(note));
  // Highlighted once: a card shown again (back from the Reports tab) would replay it.
  if (entry.live) card.addEventListener('animationend', () => card.classList.remove('is-new'), { once: true });
  return card;
}

const cards = new WeakMap(); // entry → its card, built once so images never reload

function renderFeed() {
  const { chatId, loading, error } = store.feed;
  const chat = chatId == null ? null : store.chats.get(chatId);
  const feed = $('feed');
  $('feed-heading').textContent = chatId == null ? 'Notifications' : `Chat ${chatId}`;
  const entries = chat ? [...chat.notes].reverse() : []; // the newest first
  let status = '';
  if (chatId == null) status = 'Choose a chat to see its notifications.';
  else if (error) status = `The chat's notifications could not be loaded: ${error}`;
  else if (!entries.length) status = loading ? 'Loading…' : 'No notifications in this chat.';
  $('feed-status').textContent = status;
  $('feed-status').hidden = !status;
  // New cards go on top: someone reading further down keeps their place.
  const pane = feed.parentElement;
  const before = pane.scrollHeight;
  // Cards already in place are left alone: moving one would replay its highlight.
  entries.forEach((entry, i) => {
    if (!cards.has(entry)) cards.set(entry, notificationCard(entry));
    const card = cards.get(entry);
    if (feed.children[i] !== card) feed.insertBefore(card, feed.children[i] || null);
  });
  while (feed.children.length > entries.length) feed.lastElementChild.remove();
  if (pane.scrollTop > 0) pane.scrollTop += pane.scrollHeight - before;
}

async function selectChat(chatId) {
  if (store.feed.chatId === chatId) return;
  store.selected = chatId;
  store.feed = { chatId, loading: true, error: null };
  const chat = store.chats.get(chatId);
  if (chat) chat.unread = 0;
  $('feed').parentElement.scrollTop = 0;
  scheduleChatsRender();
  if (chat) showSidebar(chat.customerId);
  try {
    const { notifications } = await getJson(`/chats/${encodeURIComponent(chatId)}/notifications`);
    if (store.feed.chatId !== chatId) return;
    notifications.forEach((note) => addNotification(note, false));
    store.feed.loading = false;
  } catch (error) {
    if (store.feed.chatId !== chatId) return;
    store.feed = { chatId, loading: false, error: error.message };
  }
  const known = store.chats.get(chatId);
  if (known) showSidebar(known.customerId);
  scheduleChatsRender();
}

// ---------------------------------------------------------------------------
// 9. Sidebar: the open chat's customer and their orders
// ---------------------------------------------------------------------------

const sidebar = { customerId: null, answer: null, status: 'Choose a chat to see its customer.', controller: null };

/** Shows a customer; a change of customer clears the previous one's figures. */
function showSidebar(customerId) {
  if (customerId == null) return;
  if (customerId === sidebar.customerId) return renderSidebar(); // another chat of theirs
  sidebar.customerId = customerId;
  sidebar.answer = null;
  sidebar.status = 'loading…';
  renderSidebar();
  refreshSidebar(null);
}

/** Reads the customer's orders again. With `orderId` (a new order's notification) it
 *  tries again a few times until that order is in: the notification comes as the order
 *  is placed, the sidebar's figures once the order has been attributed, a little later. */
async function refreshSidebar(orderId) {
  if (sidebar.controller) sidebar.controller.abort();
  const controller = new AbortController();
  sidebar.controller = controller;
  const customerId = sidebar.customerId;
  for (const waitMs of [0, 1000, 2000, 4000, 8000, 15000]) {
    if (waitMs) await sleep(waitMs);
    if (controller.signal.aborted) return;
    try {
      const answer = await getJson(`/customers/${encodeURIComponent(customerId)}/orders`, {}, controller.signal);
      sidebar.answer = answer;
      sidebar.status = '';
      renderSidebar();
      if (!orderId || answer.recent_orders.some((o) => o.order_id === orderId)) return;
    } catch (error) {
      if (isAbort(error)) return;
      sidebar.status = `The orders could not be loaded: ${error.message}`;
      renderSidebar();
      if (error.refused) return;
    }
  }
}

function sidebarOrder(order) {
  const timing = TIMING_LABELS[order.sale_timing];
  return h('li', { class: 'order', 'data-testid': 'sidebar-order', 'data-order-id': order.order_id },
    h('span', { class: 'order-number' }, order.order_number),
    h('span', { class: 'order-total' }, money(order.total, order.currency)),
    h('span', { class: 'order-meta' }, timeEl(order.placed_at),
      order.chat_id ? [' · chat ', h('span', { class: 'mono' }, order.chat_id)] : ' · no chat',
      order.chat_id && order.chat_id === store.selected ? h('span', { class: 'tag' }, 'this chat') : null,
      timing ? [' · ', timing] : null));
}

function renderSidebar() {
  const answer = sidebar.answer;
  $('sidebar-customer').textContent = sidebar.customerId ?? '–';
  $('sidebar-status').textContent = sidebar.status;
  $('sidebar-order-count').textContent = answer ? String(answer.order_count) : '–';
  $('sidebar-during').textContent = answer ? String(answer.orders_during_chat) : '–';
  $('sidebar-after').textContent = answer ? String(answer.orders_after_chat) : '–';
  const spend = answer ? answer.spend : [];
  $('sidebar-spend').replaceChildren(...(spend.length
    ? spend.map((s) => h('li', { 'data-currency': s.currency }, money(s.amount, s.currency)))
    : [h('li', { class: 'muted' }, answer ? 'Nothing yet' : '–')]));
  const orders = answer ? answer.recent_orders : [];
  $('sidebar-orders').replaceChildren(...(orders.length
    ? orders.map(sidebarOrder)
    : [h('li', { class: 'muted' }, answer ? 'No orders yet.' : '–')]));
}

// ---------------------------------------------------------------------------
// 10. Reports view: the query's form, totals, chart and tables
// ---------------------------------------------------------------------------

const COMMON_CURRENCIES = ['EUR', 'USD', 'PLN', 'GBP', 'JPY'];
const CHART_MAX_DAYS = 400; // longer ranges chart only their days with orders
const report = { started: false, controller: null, facetsController: null, answer: null, facetsTimer: null };

function startReports() {
  if (report.started) return;
  report.started = true;
  // The last 7 days ending today, in the organization's timezone once it is known.
  const today = wins.current ? todayIn(wins.current.timezone) : todayIn(undefined);
  $('report-to').value = today;
  $('report-from').value = addDays(today, -6);
  $('report-form').addEventListener('submit', (event) => { event.preventDefault(); runReport(); });
  $('report-currency').addEventListener('input', (event) => { event.target.value = event.target.value.toUpperCase(); });
  for (const id of ['report-from', 'report-to']) {
    $(id).addEventListener('change', () => {
      clearTimeout(report.facetsTimer);
      report.facetsTimer = setTimeout(loadFacets, 250);
    });
  }
  new ResizeObserver(() => { if (report.answer) renderChart(report.answer); }).observe($('report-chart'));
  updateTeamOptions([]);
  updateCurrencyOptions([]);
  loadFacets();
  runReport();
}

function readQuery() {
  return {
    from: $('report-from').value, to: $('report-to').value,
    currency: $('report-currency').value.trim().toUpperCase(), timing: $('report-timing').value,
    teams: [...$('report-team').selectedOptions].map((o) => o.value), ai: $('report-ai').checked,
  };
}

/** What is wrong with a query before asking: [field, message] or null. */
function queryProblem(q) {
  if (!q.from) return ['from', 'Choose the first day.'];
  if (!q.to) return ['to', 'Choose the last day.'];
  if (q.from > q.to) return ['from', 'The first day is after the last day.'];
  if (q.currency && !/^[A-Z]{3}$/.test(q.currency)) return ['currency', 'The display currency is a three-letter ISO code such as EUR.'];
  return null;
}

function setReportStatus(state, text, field = null) {
  const el = $('report-status');
  el.dataset.state = state;
  el.textContent = text;
  $('report-result').setAttribute('aria-busy', String(state === 'loading'));
  for (const id of ['report-from', 'report-to', 'report-currency', 'report-timing', 'report-team', 'report-ai']) {
    if (id === `report-${field}`) $(id).setAttribute('aria-invalid', 'true');
    else $(id).removeAttribute('aria-invalid');
  }
}

async function runReport() {
  const q = readQuery();
  const problem = queryProblem(q);
  if (report.controller) report.controller.abort();
  if (problem) return setReportStatus('error', problem[1], problem[0]);
  report.controller = new AbortController();
  setReportStatus('loading', 'loading');
  const params = {
    from: q.from, to: q.to, currency: q.currency || null, timing: q.timing || null,
    team: q.teams, ai: q.ai ? 'true' : null, by_day: 'true',
  };
  try {
    const answer = await getJson('/reports', params, report.controller.signal);
    report.answer = answer;
    renderAnswer(answer, q);
    updateCurrencyOptions(answer.currencies);
    setReportStatus('ready', 'ready');
  } catch (error) {
    if (isAbort(error)) return;
    const field = error.field ? error.field.replace(/^.*\./, '') : null;
    setReportStatus('error', error.message + (error.field ? ` (${error.field})` : ''), field);
  }
}

/** The teams and currencies present in the chosen days, for the filters. */
async function loadFacets() {
  const from = $('report-from').value;
  const to = $('report-to').value;
  if (!from || !to || from > to) return;
  if (report.facetsController) report.facetsController.abort();
  report.facetsController = new AbortController();
  try {
    const facets = await getJson('/reports/facets', { from, to }, report.facetsController.signal);
    updateTeamOptions(facets.teams);
    updateCurrencyOptions(facets.currencies);
  } catch (error) {
    if (!isAbort(error)) console.warn('sales console: report facets', error.message);
  }
}

/** The team list: the days' teams, then "no team" and "other teams"; a team still
 *  selected stays in the list even when the new days do not have it. */
function updateTeamOptions(teams) {
  const select = $('report-team');
  const selected = new Set([...select.selectedOptions].map((o) => o.value));
  const ids = [...new Set([...teams, ...[...selected].filter((v) => v !== 'none' && v !== 'other')])].sort();
  const option = (value, label) => h('option', { value, selected: selected.has(value) }, label);
  select.replaceChildren(...ids.map((id) => option(id, id)), option('none', 'no team'), option('other', 'other teams'));
}

const knownCurrencies = new Set(COMMON_CURRENCIES);

function updateCurrencyOptions(currencies) {
  currencies.forEach((c) => knownCurrencies.add(c));
  $('report-currency-options').replaceChildren(...[...knownCurrencies].sort().map((c) => h('option', { value: c })));
}

/** "All Sales · 2024-05-01 to 2024-05-07 · in EUR · during chat · teams a, no team". */
function answerTitle(answer, q) {
  const teamNames = { none: 'no team', other: 'other teams' };
  return [
    q.ai ? 'AI Agent Sales' : 'All Sales',
    `${answer.from} to ${answer.to}`,
    answer.display_currency ? `in ${answer.display_currency}` : 'each currency apart',
    q.timing ? TIMING_LABELS[q.timing] : null,
    q.teams.length ? `teams ${q.teams.map((t) => teamNames[t] || t).join(', ')}` : null,
  ].filter(Boolean).join(' · ');
}

/** Revenue as shown in a cell: the converted amount and what was not converted, or each
 *  currency's amount. */
function revenueCell(totals) {
  const c = totals.converted;
  if (c) {
    return [money(c.revenue, c.currency),
      c.not_converted.length ? h('span', { class: 'muted' }, ` + not converted: ${c.not_converted.join(', ')}`) : null];
  }
  return totals.revenue.length ? joined(totals.revenue.map((r) => money(r.revenue, r.currency)), ' + ') : '0';
}

/** An average in seconds (a decimal string): "3 min 20 s", the exact seconds aside. */
function averageCell(seconds) {
  return seconds == null ? '–' : h('span', { title: `${seconds} s` }, durationText(Number(seconds)));
}

function renderAnswer(answer, q) {
  const t = answer.totals;
  $('report-title').textContent = answerTitle(answer, q);
  $('report-total-orders').textContent = String(t.orders);
  $('report-revenue-list').replaceChildren(...(t.revenue.length
    ? t.revenue.map((r) => h('li', {},
      money(r.revenue, r.currency, { 'data-testid': 'report-revenue', 'data-currency': r.currency }),
      h('span', { class: 'muted' }, ` · ${r.orders} ${r.orders === 1 ? 'order' : 'orders'}`)))
    : [h('li', { class: 'muted' }, 'No orders')]));
  const c = t.converted;
  // replaceChildren() would write a null as the text "null": absent parts are left out.
  $('report-converted-box').replaceChildren(...(c
    ? [h('p', { class: 'big' }, money(c.revenue, c.currency, { 'data-testid': 'report-converted', id: 'report-converted' })),
      c.not_converted.length
        ? h('p', { class: 'warning', 'data-testid': 'report-not-converted' },
          `Not converted (no rate): ${c.not_converted.join(', ')}; not in this total.`)
        : null].filter(Boolean)
    : [h('p', { class: 'muted' }, 'Choose a display currency for one total.')]));
  $('report-average').replaceChildren(averageCell(t.average_time_to_order_seconds));
  $('report-average-exact').textContent = t.average_time_to_order_seconds == null ? '' : `${t.average_time_to_order_seconds} s`;
  renderNotes(answer);
  renderChart(answer);
  renderDays(answer);
  renderTopOrders(answer);
}

function renderNotes(answer) {
  const notes = [
    ['report-days-without-cells', 'Days from reports older than v2, without cells, not counted', answer.days_without_cells],
    ['report-days-with-merged-teams', 'Days where teams beyond the cap were merged into “other teams” (a team filter may miss their orders)', answer.days_with_merged_teams],
  ].filter(([, , days]) => days.length);
  $('report-notes').replaceChildren(...notes.map(([testid, text, days]) =>
    h('li', { 'data-testid': testid }, `${text}: `, h('span', { class: 'mono' }, days.join(', ')))));
}

function renderDays(answer) {
  $('report-days').replaceChildren(...(answer.days.length
    ? answer.days.map((day) => h('tr', { 'data-testid': 'report-day', 'data-date': day.date },
      h('th', { scope: 'row' }, day.date),
      h('td', { class: 'num', 'data-testid': 'report-day-orders' }, String(day.orders)),
      h('td', { class: 'num', 'data-testid': 'report-day-revenue' }, revenueCell(day)),
      h('td', { class: 'num' }, averageCell(day.average_time_to_order_seconds))))
    : [h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No orders in these days.'))]));
}

function renderTopOrders(answer) {
  const display = answer.display_currency;
  $('report-top-head').replaceChildren(h('tr', {},
    h('th', { scope: 'col' }, 'Order'), h('th', { scope: 'col' }, 'Date'), h('th', { scope: 'col', class: 'num' }, 'Total'),
    display ? h('th', { scope: 'col', class: 'num' }, `In ${display}`) : null,
    h('th', { scope: 'col', class: 'num' }, 'Time to order'), h('th', { scope: 'col' }, 'Chat')));
  const columns = display ? 6 : 5;
  $('report-top').replaceChildren(...(answer.top_orders.length
    ? answer.top_orders.map((o) => h('tr', { 'data-testid': 'report-top-order', 'data-order-id': o.order_id },
      h('th', { scope: 'row' }, o.order_number),
      h('td', {}, h('span', { title: fullFormat.format(new Date(instantMs(o.placed_at) ?? 0)) }, o.date)),
      h('td', { class: 'num' }, money(o.total, o.currency)),
      display ? h('td', { class: 'num' }, o.converted_total == null ? h('span', { class: 'muted' }, 'no rate') : money(o.converted_total, display)) : null,
      h('td', { class: 'num', title: `${o.time_to_order_micros / 1e6} s` }, durationText(o.time_to_order_micros / 1e6)),
      h('td', { class: 'mono' }, o.chat_id)))
    : [h('tr', {}, h('td', { colspan: columns, class: 'muted' }, 'No orders.'))]));
}

/** What the chart draws: revenue in the display currency, or in the only currency there
 *  is; with several and none chosen, orders (currencies are never added together).
 *  Floats only size the bars; every figure written is the API's own text. */
function chartSeries(answer) {
  const display = answer.display_currency;
  const only = !display && answer.totals.revenue.length === 1 ? answer.totals.revenue[0].currency : null;
  const byDate = new Map(answer.days.map((d) => [d.date, d]));
  let dates = [];
  for (let d = answer.from; d <= answer.to && dates.length <= CHART_MAX_DAYS; d = addDays(d, 1)) dates.push(d);
  if (dates.length > CHART_MAX_DAYS) dates = answer.days.map((d) => d.date);
  const points = dates.map((date) => {
    const day = byDate.get(date);
    const orders = day ? day.orders : 0;
    let amount = null;
    if (day && display && day.converted) amount = day.converted.revenue;
    if (day && only) amount = (day.revenue.find((r) => r.currency === only) || {}).revenue;
    const value = display || only ? Number(amount || 0) : orders;
    const ordersText = `${orders} ${orders === 1 ? 'order' : 'orders'}`;
    const label = amount != null ? `${date}: ${amount} ${display || only}, ${ordersText}` : `${date}: ${ordersText}`;
    return { date, orders, value, label };
  });
  const counts = !(display || only);
  const caption = display || only
    ? `Revenue per day in ${display || only}; the number above each bar is its orders.`
    : 'Orders per day (several currencies: choose a display currency to chart revenue).';
  return { points, caption, counts };
}

/** The value axis: a round step (1, 2 or 5 times a power of ten; whole for counts) and
 *  the top, at most four steps up. */
function valueAxis(max, whole) {
  if (!(max > 0)) return { step: 1, top: 1 };
  const rough = Math.max(max, whole ? 1 : 0) / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  let step = [1, 2, 5, 10].map((m) => m * power).find((m) => m >= rough);
  if (whole) step = Math.max(1, Math.round(step));
  return { step, top: step * Math.max(1, Math.ceil(max / step)) };
}

const compactNumber = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });

function renderChart(answer) {
  const box = $('report-chart');
  const { points, caption, counts } = chartSeries(answer);
  $('report-chart-caption').textContent = caption;
  const width = box.clientWidth || 900; // 0 while the view is hidden
  const height = 240;
  const pad = { left: 52, right: 12, top: 20, bottom: 28 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const { step, top } = valueAxis(Math.max(0, ...points.map((p) => p.value)), counts);
  const slot = plotW / Math.max(points.length, 1);
  const barW = Math.max(1, Math.min(48, slot * 0.7));
  const labelEvery = Math.ceil(points.length / Math.max(1, Math.floor(plotW / 56)));
  const y = (v) => pad.top + plotH - (v / top) * plotH;
  const ticks = Array.from({ length: Math.round(top / step) + 1 }, (_, i) => i * step);
  const grid = ticks.map((v) => svg('g', { class: 'grid' },
    svg('line', { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }),
    svg('text', { x: pad.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, compactNumber.format(v))));
  const bars = points.map((p, i) => {
    const x = pad.left + slot * i + (slot - barW) / 2;
    const barH = Math.max(0, pad.top + plotH - y(p.value));
    return svg('g', { class: 'bar', 'data-testid': 'report-chart-bar', 'data-date': p.date },
      svg('title', {}, p.label),
      // A full-height strip so the tooltip works on short bars too.
      svg('rect', { class: 'bar-hit', x: pad.left + slot * i, y: pad.top, width: slot, height: plotH }),
      svg('rect', { class: 'bar-fill', x, y: pad.top + plotH - barH, width: barW, height: barH, rx: Math.min(3, barW / 4) }),
      p.orders && barW >= 14 ? svg('text', { class: 'bar-count', x: x + barW / 2, y: pad.top + plotH - barH - 4, 'text-anchor': 'middle' }, String(p.orders)) : null,
      i % labelEvery === 0 ? svg('text', { class: 'axis', x: x + barW / 2, y: height - 8, 'text-anchor': 'middle' },
        shortDayFormat.format(new Date(`${p.date}T00:00:00Z`))) : null);
  });
  box.replaceChildren(svg('svg', {
    width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc',
  },
  svg('title', { id: 'chart-title' }, caption),
  svg('desc', { id: 'chart-desc' }, 'One bar per day. The Days table below has the same figures.'),
  grid, bars));
}

// ---------------------------------------------------------------------------
// 11. Tabs and routes: #/chats, #/chats/{chat}, #/reports
// ---------------------------------------------------------------------------

function currentRoute() {
  const path = location.hash.replace(/^#/, '');
  if (path.startsWith('/reports')) return { view: 'reports' };
  const match = /^\/chats\/(.+)$/.exec(path);
  try {
    return { view: 'chats', chat: match ? decodeURIComponent(match[1]) : null };
  } catch {
    return { view: 'chats', chat: null };
  }
}

function applyRoute() {
  const route = currentRoute();
  for (const view of ['chats', 'reports']) {
    const tab = $(`tab-${view}`);
    const active = view === route.view;
    $(`view-${view}`).hidden = !active;
    tab.setAttribute('aria-selected', String(active));
    tab.tabIndex = active ? 0 : -1;
  }
  // The Chats tab goes back to the chat that was open.
  if (store.selected != null) $('tab-chats').href = `#/chats/${encodeURIComponent(store.selected)}`;
  if (route.view === 'chats' && route.chat != null) {
    selectChat(route.chat);
    $('tab-chats').href = `#/chats/${encodeURIComponent(route.chat)}`;
  }
  if (route.view === 'reports') startReports();
}

/** Arrow keys, Home and End move between the tabs and open them; Space opens one too. */
function onTabKey(event) {
  const tabs = [...$('tabs').querySelectorAll('[role="tab"]')];
  const at = tabs.indexOf(event.target);
  if (at < 0) return;
  const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1, ' ': at }[event.key];
  if (to === undefined) return;
  event.preventDefault();
  const tab = tabs[(to + tabs.length) % tabs.length];
  tab.focus();
  tab.click();
}

// ---------------------------------------------------------------------------
// 12. Start
// ---------------------------------------------------------------------------

function start() {
  // A new link pasted into this tab changes only the fragment: start again with it.
  window.addEventListener('hashchange', () => { if (linkInFragment()) location.reload(); });
  $('no-session').hidden = Boolean(session);
  if (!session) return;
  $('app').hidden = false;
  $('org-id').textContent = session.org;
  document.title = `${session.org} · Sales console`;
  $('chat-list').addEventListener('keydown', onChatListKey);
  $('tabs').addEventListener('keydown', onTabKey);
  window.addEventListener('hashchange', () => { if (!linkInFragment()) applyRoute(); });
  renderSidebar();
  renderConnection();
  loadWins();
  startWinsStream();
  startNotifications();
  setInterval(checkNewDay, 60_000);
  applyRoute();
}

start();
