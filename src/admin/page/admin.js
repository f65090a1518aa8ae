// The qwen2api admin page: plain script, no framework, no build step. It keeps the admin key
// in sessionStorage (this tab only), sends it as a bearer header (never in a URL), and calls
// the admin API beside the page: the page is served at <prefix>/admin, the API at <prefix>/api.
'use strict';

(() => {
  const BASE = location.pathname.replace(/\/admin\/?$/, '');
  const KEY_STORE = 'qwen2api.adminKey';
  const MAX_ROWS = 500;
  const TABS = ['accounts', 'keys', 'usage', 'live', 'settings'];

  let adminKey = sessionStorage.getItem(KEY_STORE);
  let tab = null;
  let poll = null;
  let liveAbort = null;
  let records = [];
  let keyLabels = {};
  let armed = null; // { action, id }: a destructive button clicked once, waiting for a second
  let editing = null; // the key id whose limits the key form edits

  const $ = (id) => document.getElementById(id);

  // --- helpers -------------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k === 'data') Object.assign(node.dataset, v);
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined) node.append(c);
    }
    return node;
  }

  function fmtNum(n) {
    return n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US');
  }

  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
  }

  function today() {
    return new Date().toISOString().slice(0, 10);
  }

  let noticeTimer = null;
  function notice(text, ok) {
    const n = $('notice');
    n.textContent = text;
    n.className = ok ? 'notice ok' : 'notice';
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, 8000);
  }

  class Refused extends Error {}

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + adminKey };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(BASE + path, init);
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (resp.status === 401 || resp.status === 403) {
      throw new Refused(resp.status === 401 ? 'The admin key was refused.'
        : 'This key is not the admin key.');
    }
    if (!resp.ok) {
      throw new Error((data && data.error && data.error.message) || 'HTTP ' + resp.status);
    }
    return data;
  }

  function failed(e) {
    if (e instanceof Refused) {
      signOut(e.message);
    } else {
      notice(e.message || String(e), false);
    }
  }

  // --- sign-in and tabs ----------------------------------------------------------------------

  async function signIn(key) {
    adminKey = key;
    try {
      await api('GET', '/api/configStatus');
    } catch (e) {
      adminKey = null;
      sessionStorage.removeItem(KEY_STORE);
      $('signin-error').textContent = e instanceof Refused ? e.message : 'Cannot reach the server: ' + e.message;
      $('signin-error').hidden = false;
      return;
    }
    sessionStorage.setItem(KEY_STORE, key);
    $('signin').hidden = true;
    $('signin-error').hidden = true;
    $('nav').hidden = false;
    startLive();
    const wanted = location.hash.slice(1);
    show(TABS.includes(wanted) ? wanted : 'accounts');
  }

  function signOut(message) {
    adminKey = null;
    sessionStorage.removeItem(KEY_STORE);
    if (liveAbort) liveAbort.abort();
    clearInterval(poll);
    records = [];
    for (const t of TABS) $(t).hidden = true;
    $('nav').hidden = true;
    $('signin').hidden = false;
    $('signin-key').value = '';
    if (message) {
      $('signin-error').textContent = message;
      $('signin-error').hidden = false;
    }
  }

  const LOADERS = {
    accounts: loadAccounts,
    keys: loadKeys,
    usage: loadUsage,
    live: renderLive,
    settings: loadSettings,
  };
  const POLLED = { accounts: 2000, keys: 5000 };

  function show(name) {
    tab = name;
    for (const t of TABS) {
      $(t).hidden = t !== name;
      $('tab-' + t).classList.toggle('active', t === name);
    }
    if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
    clearInterval(poll);
    LOADERS[name]();
    if (POLLED[name]) poll = setInterval(() => LOADERS[name](), POLLED[name]);
  }

  // --- accounts ------------------------------------------------------------------------------

  async function usageToday() {
    const u = await api('GET', '/api/usage?days=1');
    const byId = (rows) => {
      const out = {};
      for (const r of rows) {
        if (r.day !== today()) continue;
        out[r.id] = { requests: r.requests, tokens: r.promptTokens + r.completionTokens };
      }
      return out;
    };
    return { accounts: byId(u.data.accounts), keys: byId(u.data.keys) };
  }

  function armedButton(action, id, label, confirmLabel, run) {
    const isArmed = armed && armed.action === action && armed.id === id;
    return el('button', {
      type: 'button',
      class: 'danger ' + action,
      text: isArmed ? confirmLabel : label,
      onclick: async () => {
        if (!(armed && armed.action === action && armed.id === id)) {
          armed = { action, id };
          LOADERS[tab]();
          return;
        }
        armed = null;
        try { await run(); } catch (e) { failed(e); }
        LOADERS[tab]();
      },
    });
  }

  async function loadAccounts() {
    let health, usage;
    try {
      [health, usage] = await Promise.all([api('GET', '/api/accountsHealth'), usageToday()]);
    } catch (e) { failed(e); return; }
    const d = health.data;
    $('accounts-summary').textContent =
      `${d.healthyAccounts} of ${d.totalAccounts} usable`;
    const body = $('accounts-table').tBodies[0];
    body.replaceChildren();
    if (d.accounts.length === 0) {
      body.append(el('tr', {}, el('td', { colspan: 12, class: 'empty', text: 'No account yet: add one below.' })));
    }
    const proxySelect = $('proxy-account');
    const chosen = proxySelect.value;
    proxySelect.replaceChildren();
    for (const a of d.accounts) {
      const used = usage.accounts[a.accountId] || { requests: 0, tokens: 0 };
      proxySelect.append(el('option', { value: a.accountId, text: a.accountId }));
      body.append(el('tr', { data: { id: a.accountId, state: a.state } },
        el('td', { text: a.accountId }),
        el('td', { class: 'site', text: a.site || 'qwen' }),
        el('td', { class: 'state' }, el('span', { class: 'pill state-' + a.state, text: a.state })),
        el('td', { text: a.reason || '—' }),
        el('td', { text: a.coolingUntil ? fmtTime(a.coolingUntil) : '—' }),
        el('td', { class: 'num', text: fmtNum(a.failureCount) }),
        el('td', { class: 'num', text: fmtNum(a.inflight) }),
        el('td', { class: 'num requests-today', text: fmtNum(used.requests) }),
        el('td', { class: 'num tokens-today', text: fmtNum(used.tokens) }),
        el('td', { class: 'proxy', text: a.proxy || '—' }),
        el('td', { text: a.tokenExpiresAt ? fmtTime(a.tokenExpiresAt) : '—' }),
        el('td', {},
          el('button', {
            type: 'button', class: 'retest', text: 'Re-test',
            onclick: async (ev) => {
              ev.target.disabled = true;
              try {
                const r = await api('POST', '/api/accounts/' + encodeURIComponent(a.accountId) + '/retest');
                const outcome = r.data.ok ? 'passed'
                  : r.data.error === 'unsupported_by_site' ? 'cannot be checked by the server (unsupported_by_site)'
                  : 'failed (' + r.data.error + ')';
                notice(`${a.accountId}: ${outcome}, now ${r.data.state}`, r.data.ok);
              } catch (e) { failed(e); }
              loadAccounts();
            },
          }),
          armedButton('delete', a.accountId, 'Delete', 'Confirm delete', async () => {
            await api('DELETE', '/api/deleteAccount/' + encodeURIComponent(a.accountId));
            notice(`${a.accountId} deleted`, true);
          }))));
    }
    if (chosen) proxySelect.value = chosen;
    $('proxy-form').hidden = d.accounts.length === 0;
  }

  async function addAccount(ev) {
    ev.preventDefault();
    const kind = $('add-kind').value;
    let body;
    if (kind === 'password') {
      body = { email: $('add-email').value.trim(), password: $('add-password').value };
    } else if (kind === 'tongyi') {
      body = { kind: 'tongyi', cookie: $('add-tongyi-cookie').value.trim(), xsrfToken: $('add-xsrf').value.trim() };
      if ($('add-num').value) body.num = Number($('add-num').value);
    } else {
      body = { cookie: kind === 'cookie' ? $('add-cookie').value.trim() : $('add-token').value.trim() };
      if ($('add-num').value) body.num = Number($('add-num').value);
    }
    $('add-submit').disabled = true;
    try {
      const r = await api('POST', '/api/addAccount', body);
      notice(`Account ${r.data.accountId} added`, true);
      $('add-account').reset();
      showKindFields();
    } catch (e) { failed(e); }
    $('add-submit').disabled = false;
    loadAccounts();
  }

  function showKindFields() {
    const kind = $('add-kind').value;
    for (const label of $('add-account').querySelectorAll('label[data-kind]')) {
      label.hidden = !label.dataset.kind.split(' ').includes(kind);
    }
  }

  async function setProxy(ev, clear) {
    if (ev) ev.preventDefault();
    const id = $('proxy-account').value;
    const proxy = clear ? null : $('proxy-url').value.trim() || null;
    try {
      await api('PUT', '/api/accounts/' + encodeURIComponent(id) + '/proxy', { proxy });
      notice(proxy ? `Proxy set for ${id}` : `Proxy cleared for ${id}`, true);
      $('proxy-url').value = '';
    } catch (e) { failed(e); }
    loadAccounts();
  }

  // --- keys ----------------------------------------------------------------------------------

  function limitsText(l) {
    if (!l) return 'none (configured key)';
    const parts = [];
    if (l.requestsPerMinute) parts.push(`${l.requestsPerMinute}/min`);
    if (l.concurrentRequests) parts.push(`${l.concurrentRequests} at once`);
    if (l.tokensPerDay) parts.push(`${fmtNum(l.tokensPerDay)} tokens/day`);
    if (l.models) parts.push('models ' + l.models.join(', '));
    if (l.expiresAt) parts.push('expires ' + fmtTime(new Date(l.expiresAt).toISOString()));
    return parts.length ? parts.join('; ') : 'no limits';
  }

  async function loadKeys() {
    let keys, usage;
    try {
      [keys, usage] = await Promise.all([api('GET', '/api/keys'), usageToday()]);
    } catch (e) { failed(e); return; }
    const body = $('keys-table').tBodies[0];
    body.replaceChildren();
    for (const k of keys.data) {
      keyLabels[k.id] = k.label;
      const used = usage.keys[k.id] || { requests: 0, tokens: 0 };
      const actions = k.source === 'runtime'
        ? el('td', {},
          el('button', { type: 'button', class: 'edit', text: 'Edit limits', onclick: () => editLimits(k) }),
          armedButton('revoke', k.id, 'Revoke', 'Confirm revoke', async () => {
            await api('DELETE', '/api/keys/' + encodeURIComponent(k.id));
            notice(`Key ${k.label} revoked`, true);
          }))
        : el('td', { class: 'muted', text: 'set in API_KEY' });
      body.append(el('tr', { data: { id: k.id, label: k.label } },
        el('td', { text: k.label }),
        el('td', {}, el('code', { text: k.key })),
        el('td', { text: k.source }),
        el('td', { text: k.created ? fmtTime(new Date(k.created).toISOString()) : '—' }),
        el('td', { class: 'limits', text: limitsText(k.limits) }),
        el('td', { class: 'num requests-today', text: fmtNum(used.requests) }),
        el('td', { class: 'num tokens-today', text: fmtNum(used.tokens) }),
        actions));
    }
    if (keys.data.length === 0) {
      body.append(el('tr', {}, el('td', { colspan: 8, class: 'empty', text: 'No key yet.' })));
    }
  }

  function readLimits() {
    const n = (id) => ($(id).value ? Number($(id).value) : null);
    const models = $('key-models').value.split(',').map((s) => s.trim()).filter(Boolean);
    const expires = $('key-expires').value;
    return {
      requestsPerMinute: n('key-rpm'),
      concurrentRequests: n('key-concurrent'),
      tokensPerDay: n('key-tpd'),
      models: models.length ? models : null,
      expiresAt: expires ? new Date(expires).getTime() : null,
    };
  }

  function editLimits(k) {
    editing = k.id;
    const l = k.limits || {};
    $('key-form-title').textContent = `Edit the limits of ${k.label}`;
    $('key-label-field').hidden = true;
    $('key-rpm').value = l.requestsPerMinute || '';
    $('key-concurrent').value = l.concurrentRequests || '';
    $('key-tpd').value = l.tokensPerDay || '';
    $('key-models').value = (l.models || []).join(', ');
    if (l.expiresAt) {
      const d = new Date(l.expiresAt - new Date().getTimezoneOffset() * 60000);
      $('key-expires').value = d.toISOString().slice(0, 16);
    } else {
      $('key-expires').value = '';
    }
    $('key-submit').textContent = 'Save limits';
    $('key-cancel').hidden = false;
  }

  function resetKeyForm() {
    editing = null;
    $('key-form').reset();
    $('key-form-title').textContent = 'Create a key';
    $('key-label-field').hidden = false;
    $('key-submit').textContent = 'Create';
    $('key-cancel').hidden = true;
  }

  async function submitKey(ev) {
    ev.preventDefault();
    try {
      if (editing) {
        await api('PUT', '/api/keys/' + encodeURIComponent(editing) + '/limits', readLimits());
        notice('Limits saved', true);
      } else {
        const r = await api('POST', '/api/keys', { label: $('key-label').value.trim(), limits: readLimits() });
        $('new-key-value').textContent = r.key;
        $('new-key').hidden = false;
        notice(`Key ${r.label} created`, true);
      }
      resetKeyForm();
    } catch (e) { failed(e); }
    loadKeys();
  }

  // --- usage charts (SVG, drawn here) --------------------------------------------------------

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c);
    return node;
  }

  // The axis top: 1, 2, 2.5 or 5 times a power of ten, and at least 4 (whole-number ticks).
  function niceMax(v) {
    if (v <= 4) return 4;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function shortNum(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(n % 1e6 ? 1 : 0) + 'M';
    if (n >= 1e3) return (n / 1e3).toFixed(n % 1e3 ? 1 : 0) + 'k';
    return String(n);
  }

  // Stacked bars: one bar per day, one colour per subject.
  function barChart(target, days, series) {
    const W = 640, H = 230, L = 48, R = 10, T = 10, B = 28;
    const totals = days.map((_, i) => series.reduce((s, x) => s + x.values[i], 0));
    const max = niceMax(Math.max(0, ...totals));
    const plotW = W - L - R, plotH = H - T - B;
    const step = plotW / days.length;
    const barW = Math.max(2, step * 0.7);
    const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
    for (let g = 0; g <= 4; g++) {
      const y = T + plotH - (plotH * g) / 4;
      chart.append(svg('line', { x1: L, x2: W - R, y1: y, y2: y, class: g ? 'grid' : 'axis' }));
      const label = svg('text', { x: L - 6, y: y + 3, 'text-anchor': 'end' });
      label.textContent = shortNum((max * g) / 4);
      chart.append(label);
    }
    const every = Math.ceil(days.length / 10);
    days.forEach((day, i) => {
      const x = L + i * step + (step - barW) / 2;
      let y = T + plotH;
      series.forEach((s, si) => {
        const v = s.values[i];
        if (!v) return;
        const h = (plotH * v) / max;
        y -= h;
        const bar = svg('rect', { x, y, width: barW, height: h, class: 'c' + (si % 8) });
        const tip = svg('title');
        tip.textContent = `${day} ${s.name}: ${fmtNum(v)}`;
        bar.append(tip);
        chart.append(bar);
      });
      if (i % every === 0) {
        const label = svg('text', { x: x + barW / 2, y: H - 10, 'text-anchor': 'middle' });
        label.textContent = day.slice(5);
        chart.append(label);
      }
    });
    const legend = el('div', { class: 'legend' },
      ...series.map((s, si) => el('span', { class: 'c' + (si % 8), text: s.name })));
    if (!series.length) legend.append(el('span', { text: 'nothing counted in these days' }));
    $(target).replaceChildren(chart, legend);
  }

  function seriesOf(rows, days, value, name) {
    const ids = [...new Set(rows.map((r) => r.id))].sort();
    return ids.map((id) => ({
      name: name(id),
      values: days.map((d) => rows.filter((r) => r.id === id && r.day === d)
        .reduce((s, r) => s + value(r), 0)),
    }));
  }

  async function loadUsage() {
    const n = Number($('usage-days').value);
    let usage, keys;
    try {
      [usage, keys] = await Promise.all([api('GET', '/api/usage?days=' + n), api('GET', '/api/keys')]);
    } catch (e) { failed(e); return; }
    for (const k of keys.data) keyLabels[k.id] = k.label;
    const start = new Date(usage.data.since + 'T00:00:00Z');
    const days = [];
    for (let i = 0; i < n; i++) {
      days.push(new Date(start.getTime() + i * 86400000).toISOString().slice(0, 10));
    }
    const reqs = (r) => r.requests;
    const toks = (r) => r.promptTokens + r.completionTokens;
    const same = (id) => id;
    const label = (id) => keyLabels[id] || id;
    barChart('chart-account-requests', days, seriesOf(usage.data.accounts, days, reqs, same));
    barChart('chart-account-tokens', days, seriesOf(usage.data.accounts, days, toks, same));
    barChart('chart-key-requests', days, seriesOf(usage.data.keys, days, reqs, label));
    barChart('chart-key-tokens', days, seriesOf(usage.data.keys, days, toks, label));
  }

  // --- live requests (SSE read with fetch, so that the key goes in a header) -----------------

  function setLiveState(up) {
    const s = $('live-state');
    s.textContent = up ? 'live' : 'reconnecting';
    s.className = 'pill ' + (up ? 'live' : 'down');
  }

  function addRecord(r, fresh) {
    if (records.some((x) => x.requestId === r.requestId && x.time === r.time)) return;
    r.fresh = fresh;
    records.unshift(r);
    records.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
    if (records.length > MAX_ROWS) records.length = MAX_ROWS;
  }

  function matchesFilter(r) {
    const has = (id, v) => {
      const want = $(id).value.trim().toLowerCase();
      return !want || String(v ?? '').toLowerCase().includes(want);
    };
    const status = $('filter-status').value.trim();
    return has('filter-key', r.key) && has('filter-surface', r.surface)
      && has('filter-model', r.model) && has('filter-account', r.account)
      && (!status || String(r.status).startsWith(status));
  }

  function statusClass(s) {
    return s < 400 ? 'status-ok' : s < 500 ? 'status-client' : 'status-server';
  }

  function renderLive() {
    if (tab !== 'live') return;
    const body = $('live-table').tBodies[0];
    const shown = records.filter(matchesFilter);
    body.replaceChildren(...shown.map((r) => {
      const row = el('tr', { class: r.fresh ? 'fresh' : null, data: { requestId: r.requestId } },
        el('td', { text: new Date(r.time).toLocaleTimeString() }),
        el('td', { class: 'key', text: r.key || '—' }),
        el('td', { text: r.surface }),
        el('td', { class: 'model', text: r.model || '—' }),
        el('td', { text: r.account || '—' }),
        el('td', { class: 'status ' + statusClass(r.status), text: r.status }),
        el('td', { class: 'num', text: fmtNum(r.latencyMs) }),
        el('td', { class: 'num', text: fmtNum(r.ttftMs) }),
        el('td', { class: 'num', text: fmtNum(r.tokensIn) }),
        el('td', { class: 'num', text: fmtNum(r.tokensOut) }),
        el('td', { class: 'num', text: fmtNum(r.failovers) }),
        el('td', {}, el('code', { text: r.requestId })));
      r.fresh = false;
      return row;
    }));
    if (!shown.length) {
      body.append(el('tr', {}, el('td', { colspan: 12, class: 'empty', text: 'No request yet.' })));
    }
    $('live-count').textContent = `${shown.length} of ${records.length} shown`;
  }

  let refreshTimer = null;
  function onRequest(r) {
    addRecord(r, true);
    renderLive();
    // The page in view follows: usage and in-flight counts change with each request.
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      if (tab === 'keys' || tab === 'accounts' || tab === 'usage') LOADERS[tab]();
    }, 300);
  }

  function readEvents(buffer, emit) {
    let at;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (name === 'request' && data.length) emit(JSON.parse(data.join('\n')));
    }
    return buffer;
  }

  async function startLive() {
    if (liveAbort) liveAbort.abort();
    const abort = new AbortController();
    liveAbort = abort;
    while (!abort.signal.aborted && adminKey) {
      try {
        const resp = await fetch(BASE + '/api/requests/live', {
          headers: { Authorization: 'Bearer ' + adminKey },
          cache: 'no-store',
          signal: abort.signal,
        });
        if (resp.status === 401 || resp.status === 403) { signOut('The admin key was refused.'); return; }
        if (!resp.ok) throw new Error('HTTP ' + resp.status);
        setLiveState(true);
        // Listening first, then the list: nothing finished in between is missed.
        const listed = await api('GET', '/api/requests?limit=' + MAX_ROWS);
        for (const r of listed.data.reverse()) addRecord(r, false);
        renderLive();
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer = readEvents(buffer + decoder.decode(value, { stream: true }), onRequest);
        }
      } catch (e) {
        if (abort.signal.aborted) return;
      }
      setLiveState(false);
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  }

  // --- settings ------------------------------------------------------------------------------

  function shownValue(v) {
    if (v === null || v === undefined || v === '') return '—';
    if (typeof v === 'string') return v;
    return JSON.stringify(v);
  }

  async function loadSettings() {
    let status;
    try { status = await api('GET', '/api/configStatus'); } catch (e) { failed(e); return; }
    const body = $('settings-table').tBodies[0];
    body.replaceChildren(...status.data.settings.map((s) => el('tr', { data: { name: s.name } },
      el('td', {}, el('code', { text: s.name })),
      el('td', { class: 'value', text: shownValue(s.value) }))));
  }

  async function reload() {
    $('reload').disabled = true;
    try {
      const r = await api('POST', '/api/reloadConfig');
      $('reload-result').textContent = 'Reloaded: ' + JSON.stringify(r.data);
      notice('Configuration reloaded', true);
    } catch (e) {
      $('reload-result').textContent = '';
      failed(e);
    }
    $('reload').disabled = false;
    loadSettings();
  }

  // --- wiring --------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-key').addEventListener('input', () => { $('signin-error').hidden = true; });
    $('signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      signIn($('signin-key').value.trim());
    });
    $('signout').addEventListener('click', () => signOut(null));
    for (const t of TABS) $('tab-' + t).addEventListener('click', () => show(t));
    $('add-kind').addEventListener('change', showKindFields);
    $('add-account').addEventListener('submit', addAccount);
    $('proxy-form').addEventListener('submit', (ev) => setProxy(ev, false));
    $('proxy-clear').addEventListener('click', () => setProxy(null, true));
    $('key-form').addEventListener('submit', submitKey);
    $('key-cancel').addEventListener('click', resetKeyForm);
    $('usage-days').addEventListener('change', loadUsage);
    $('live-filter').addEventListener('input', renderLive);
    $('live-filter').addEventListener('submit', (ev) => ev.preventDefault());
    $('reload').addEventListener('click', reload);
    showKindFields();
    if (adminKey) signIn(adminKey);
  });
})();
