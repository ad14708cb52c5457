/*! Sales tracking for LiveChatWidget: LiveChatWidget.call('track_sales_event', { name, data }).
 * Served by ingest at GET /v1/widget.js; embed it with
 * <script async src="https://INGEST/v1/widget.js" data-organization-id="ORG"></script>
 * (data-ingest-url when ingest is not the script's own origin). No dependencies, no build step. */
(() => {
  'use strict';
  const w = window;
  const d = document;
  const existing = w.LiveChatWidget;
  // Loaded twice on one page: the first copy already serves every call.
  if (existing && existing.__sales) return;

  const ORDER = 'store_order_was_created';
  const NAMES = [ORDER, 'store_product_added_to_cart', 'store_product_removed_from_cart'];
  const KEY = 'lcw_sales_';
  const EVENTS = KEY + 'e:'; // the outbox: one entry per event not yet acknowledged
  const ORDERS = KEY + 'o:'; // order ids already sent from this browser
  const HOUR = 36e5;
  const DAY = 24 * HOUR;
  const TRIES_PER_PAGE = 8; // then the event waits for the next page load
  const IN_FLIGHT = 15e3; // a request of a page since left is given that long to land

  const script = d.currentScript || d.querySelector('script[data-organization-id]');
  const config = (script && script.dataset) || {};
  const org = config.organizationId;
  const ingest = (config.ingestUrl || (script && script.src ? new URL(script.src, location.href).origin : '')).replace(
    /\/+$/,
    '',
  );
  const warn = (message) => console.warn('LiveChatWidget: ' + message);
  const where = (field) => (field ? ` [field ${field}]` : '');
  // At most 1024 characters (ingest's bound on a title or referrer), never half of one.
  const cut = (text) => Array.from(text).slice(0, 1024).join('') || undefined;

  // Storage: localStorage, or this page's memory where the browser refuses it (storage
  // blocked, quota exceeded). One key per entry, so tabs never overwrite each other.
  const memory = new Map();
  let local = null;
  try {
    local = w.localStorage;
    local.setItem(KEY + 't', '1');
    local.removeItem(KEY + 't');
  } catch {
    local = null;
  }
  const read = (key) => {
    try {
      const value = local.getItem(key);
      if (value != null) return value;
    } catch {}
    return memory.has(key) ? memory.get(key) : null;
  };
  const write = (key, value) => {
    try {
      local.setItem(key, value);
      return memory.delete(key);
    } catch {}
    memory.set(key, value);
  };
  const remove = (key) => {
    memory.delete(key);
    try {
      local.removeItem(key);
    } catch {}
  };
  const keys = (prefix) =>
    [...new Set([...(local ? Object.keys(local) : []), ...memory.keys()])].filter((k) => k.startsWith(prefix));
  const entry = (key) => {
    try {
      return JSON.parse(read(key));
    } catch {
      return null;
    }
  };

  const uuid = () =>
    crypto.randomUUID
      ? crypto.randomUUID()
      : '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
          (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16),
        );

  // Identity: the store's own customer id when the page sets one, else a random
  // first-party id kept in this site's localStorage.
  let customer = null;
  const customerId = () => {
    if (customer) return customer.id;
    let id = read(KEY + 'cid');
    if (!id) write(KEY + 'cid', (id = uuid()));
    return id;
  };
  const setCustomer = (c) => {
    if (c == null || c.id == null) return void (customer = null);
    if (!((typeof c.id === 'string' && c.id) || Number.isInteger(c.id)))
      return warn('set_customer needs { id } as a non-empty string or an integer');
    customer = { id: String(c.id), signature: c.signature };
  };

  // The required fields of DESIGN.md section 2, with ingest's field paths. An event
  // missing one, or with one of the wrong type, is warned about and not sent.
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const STRING = [(v) => typeof v === 'string', 'a string'];
  const ID = [(v) => typeof v === 'string' || Number.isInteger(v), 'a string or an integer'];
  const NUMBER = [(v) => typeof v === 'number' && isFinite(v), 'a number'];
  const INTEGER = [Number.isInteger, 'an integer'];
  const OBJECT = [isObject, 'an object'];
  const problem = (value, path, type) =>
    value === undefined
      ? ['missing_field', path, path + ' is required']
      : type[0](value)
        ? null
        : ['invalid_field', path, `${path} must be ${type[1]}, got ${String(JSON.stringify(value)).slice(0, 64)}`];
  const fields = (object, path, spec) => {
    for (const [name, type] of spec) {
      const found = problem(object[name], path + '.' + name, type);
      if (found) return found;
    }
  };
  const lines = (object, path, spec, each) => {
    const list = object[path.slice(path.lastIndexOf('.') + 1)];
    if (list === undefined) return problem(list, path);
    if (!Array.isArray(list) || !list.length)
      return ['invalid_field', path, path + ' must be an array of at least one entry'];
    for (let i = 0; i < list.length; i++) {
      const at = `${path}[${i}]`;
      const found = problem(list[i], at, OBJECT) || fields(list[i], at, spec) || (each && each(list[i], at));
      if (found) return found;
    }
  };
  const check = (name, data) => {
    if (!NAMES.includes(name))
      return ['unknown_event', 'name', `unknown event ${JSON.stringify(name)}; expected one of ${NAMES.join(', ')}`];
    const found = problem(data, 'data', OBJECT);
    if (found) return found;
    if (name !== ORDER)
      return lines(
        data,
        'data.cart_lines',
        [
          ['total_price', NUMBER],
          ['currency', STRING],
          ['quantity', INTEGER],
          ['product', OBJECT],
        ],
        (line, at) =>
          fields(line.product, at + '.product', [
            ['id', ID],
            ['title', STRING],
          ]),
      );
    const order = data.order;
    return (
      problem(order, 'data.order', OBJECT) ||
      fields(order, 'data.order', [
        ['id', ID],
        ['order_number', ID],
        ['currency', STRING],
        ['total_price', NUMBER],
      ]) ||
      lines(order, 'data.order.line_items', [
        ['product_id', ID],
        ['title', STRING],
        ['quantity', INTEGER],
        ['price', NUMBER],
      ])
    );
  };

  let last = 0; // creation times strictly increase, so the outbox keeps the page's order
  const track = (event) => {
    const { name, data } = isObject(event) ? event : {};
    const found = isObject(event) ? check(name, data) : ['invalid_field', '', 'track_sales_event takes { name, data }'];
    if (found) return warn(`${name || 'track_sales_event'} not sent (${found[0]}): ${found[2]}${where(found[1])}`);
    if (!org) return warn(`${name} not sent: the script tag has no data-organization-id`);
    let seen;
    if (name === ORDER) {
      // A reload of the thanks page or a re-render fires the same order again: sent once.
      seen = `${ORDERS}${org}:${data.order.id}`;
      if (read(seen)) return console.info(`LiveChatWidget: order ${data.order.id} was already sent from this browser`);
      write(seen, String(Date.now()));
    }
    const body = {
      organization_id: org,
      customer_id: customerId(),
      event_id: uuid(),
      occurred_at: new Date().toISOString(),
      page: { url: location.href, title: cut(d.title), referrer: cut(d.referrer) },
      name,
      // As the page gave it: amounts stay the page's numbers, never recomputed here.
      data,
    };
    if (customer && customer.signature) body.customer_signature = customer.signature;
    write(EVENTS + body.event_id, JSON.stringify({ t: (last = Math.max(Date.now(), last + 1)), seen, body }));
    flush();
  };

  // Sending: the oldest event first, one at a time, each with its own event_id on every
  // try, so ingest's answers (429 and 503 with Retry-After) pace the whole outbox.
  const tries = {};
  let busy = false;
  let again = false;
  let timer = 0;
  const backoff = (n) => Math.min(30e3, 500 * 2 ** n) * (0.5 + Math.random() / 2);

  // The ms to wait before trying again, or undefined when the event is done with.
  const send = async (item, n) => {
    const text = JSON.stringify(item.body);
    let answer;
    try {
      answer = await fetch(ingest + '/v1/events', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: text,
        keepalive: text.length < 6e4, // browsers cap keepalive bodies at 64 KiB
        credentials: 'omit',
      });
    } catch {
      return backoff(n); // offline, ingest unreachable, or an answer this page may not read
    }
    if (answer.status === 202) return;
    const status = answer.status;
    if (status === 408 || status === 429 || status >= 500)
      return Math.max(backoff(n), 1e3 * (+answer.headers.get('Retry-After') || 0));
    let error = {};
    try {
      error = await answer.json();
    } catch {}
    warn(`${item.body.name} not accepted (${error.error_code || status}): ${error.message || ''}${where(error.field)}`);
    // Refused for good; once the page or the settings are fixed, the order may be sent.
    if (item.seen) remove(item.seen);
  };

  const later = (ms) => {
    clearTimeout(timer);
    timer = setTimeout(flush, ms);
  };
  const drain = async () => {
    for (;;) {
      const now = Date.now();
      let next = null;
      let landing = Infinity;
      for (const key of keys(EVENTS)) {
        const item = entry(key);
        if (!item || !item.body || now - item.t > (item.body.name === ORDER ? 7 * DAY : HOUR)) {
          // Older than the pipeline dedupes event ids (orders), or than a cart change matters.
          if (item && item.body) warn(`${item.body.name} ${item.body.event_id} dropped: not accepted in time`);
          remove(key);
        } else if (item.sending > now) {
          // Sent by a page that was left before the answer came: the request carries on
          // without it (keepalive) and has most likely landed; sent again, with the same
          // event_id, only if it is still here once that had time to happen.
          landing = Math.min(landing, item.sending);
        } else if ((tries[key] || 0) < TRIES_PER_PAGE && (!next || item.t < next.item.t)) next = { key, item };
      }
      if (!next) return landing < Infinity && later(landing - now);
      const { key, item } = next;
      // The oldest waits out its backoff, and everything behind it waits too.
      if (item.next > now) return later(Math.min(item.next, landing) - now);
      write(key, JSON.stringify({ ...item, sending: now + IN_FLIGHT }));
      const wait = await send(item, (tries[key] = (tries[key] || 0) + 1));
      if (wait === undefined) remove(key);
      else write(key, JSON.stringify({ ...item, next: Date.now() + wait }));
    }
  };

  const flush = async () => {
    if (busy) return void (again = true);
    busy = true;
    again = false;
    try {
      // One tab sends at a time, so two open pages never send one event twice.
      await (navigator.locks ? navigator.locks.request(KEY + 'outbox', drain) : drain());
    } catch {}
    busy = false;
    if (again) flush();
  };

  // Order ids are remembered 90 days (as long as the pipeline dedupes orders).
  for (const key of keys(ORDERS)) if (!(Date.now() - read(key) < 90 * DAY)) remove(key);

  // The page's LiveChatWidget: our calls are added, every other call goes to whatever
  // object was there before (another widget, or the queueing stub).
  const OURS = { __proto__: null, track_sales_event: track, set_customer: setCustomer };
  const install = (target) => {
    if (!isObject(target) || target.__sales) return target;
    const { call, get } = target;
    target.call = function (name, ...args) {
      if (OURS[name]) return OURS[name](...args);
      if (call) return call.apply(this, arguments);
      warn(`unknown call ${JSON.stringify(name)}`);
    };
    target.get = function (name) {
      return name === 'customer_id' ? customerId() : get && get.apply(this, arguments);
    };
    target.__sales = true;
    // Calls queued before the script loaded, in order: ['call', name, data], or
    // ['call', [name, data]] as other widgets' stubs queue them. Others' stay queued.
    const queue = Array.isArray(target._q) ? target._q : [];
    for (let i = 0; i < queue.length; ) {
      const [method, ...rest] = queue[i] || [];
      const args = rest.length === 1 && Array.isArray(rest[0]) ? rest[0] : rest;
      if (method === 'call' && OURS[args[0]]) {
        queue.splice(i, 1);
        OURS[args[0]](...args.slice(1));
      } else i++;
    }
    return target;
  };
  if (!org) warn('the script tag has no data-organization-id: no sales event is sent');
  let current = install(existing || { _q: [] });
  try {
    // A script that replaces LiveChatWidget later gets our calls added to its object too.
    Object.defineProperty(w, 'LiveChatWidget', {
      configurable: true,
      enumerable: true,
      get: () => current,
      set: (value) => void (current = install(value)),
    });
  } catch {
    w.LiveChatWidget = current;
  }
  w.addEventListener('online', flush);
  flush(); // what earlier pages of this site left unsent
})();
