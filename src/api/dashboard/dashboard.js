// The monitoring page: reads the service's own endpoints every few seconds and draws them
// with plain DOM and SVG. No libraries, nothing loaded from elsewhere.
//
// Every number taken from the API is shown in an element with a stable id or `data-field`,
// formatted deterministically (`fmt`: 4 decimals), with the unrounded value in `data-value`,
// so tests (and scrapers) can compare the page with the JSON.
'use strict';

(() => {
  const REFRESH_MS = 5000;
  const HISTORY = 60;
  const TOKEN_KEY = 'titanic-monitoring-token';
  // The SVG namespace, read from the HTML parser rather than spelled out.
  const SVG_NS = (() => {
    const t = document.createElement('template');
    t.innerHTML = '<svg></svg>';
    return t.content.firstChild.namespaceURI;
  })();

  const $ = (id) => document.getElementById(id);

  // ---- formatting -------------------------------------------------------------------

  const isNum = (x) => typeof x === 'number' && Number.isFinite(x);

  /** 4 decimals; tiny non-zero values in exponent form so they do not read as 0. */
  function fmt(x) {
    if (!isNum(x)) return '—';
    if (x !== 0 && Math.abs(x) < 0.0001) return x.toExponential(3);
    return x.toFixed(4);
  }

  function fmtFixed(x, digits) {
    return isNum(x) ? x.toFixed(digits) : '—';
  }

  function fmtCount(x) {
    return isNum(x) ? String(Math.round(x)) : '—';
  }

  function fmtMs(seconds) {
    return isNum(seconds) ? (seconds * 1000).toFixed(3) : '—';
  }

  function fmtBool(b) {
    return b === true ? 'yes' : b === false ? 'no' : '—';
  }

  // ---- DOM helpers ------------------------------------------------------------------

  /** An element with attributes (`text` sets the text content) and children. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') node.textContent = String(v);
      else if (k === 'class') node.setAttribute('class', v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }

  /** The raw value for `data-value`: the shortest round-trip form, empty for null. */
  function raw(x) {
    if (x === null || x === undefined) return '';
    return String(x);
  }

  /** Sets a fact (`<dd>`/`<span>`): its text and its unrounded value. */
  function setFact(id, text, value) {
    const node = $(id);
    node.textContent = text;
    node.setAttribute('data-value', raw(value));
  }

  /** A table cell showing an API number. */
  function numCell(field, value, format) {
    return el('td', { 'data-field': field, 'data-value': raw(value), class: 'num', text: (format || fmt)(value) });
  }

  function textCell(field, value) {
    return el('td', { 'data-field': field, 'data-value': raw(value), text: value === null || value === undefined ? '—' : String(value) });
  }

  /** A bin label for people: bin edges printed with float noise (`31.80000000000001`)
   *  shortened to 10 significant digits. `data-bin` keeps the API's label. */
  function binLabel(label) {
    return String(label).replace(/-?\d+\.\d{6,}/g, (m) => String(Number(Number(m).toPrecision(10))));
  }

  function idPart(s) {
    return String(s).replace(/[^A-Za-z0-9_-]/g, '_');
  }

  // ---- the token --------------------------------------------------------------------

  let memoryToken = null;

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || memoryToken;
    } catch (_) {
      return memoryToken;
    }
  }

  function storeToken(token) {
    memoryToken = token || null;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Storage disabled: the token lives as long as the page.
    }
  }

  /** Takes `token=...` out of the fragment (and out of the address bar and history). */
  function tokenFromFragment() {
    const hash = location.hash.replace(/^#/, '');
    if (!hash) return null;
    const params = new URLSearchParams(hash);
    const token = params.get('token');
    if (token === null) return null;
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    return token.trim() || null;
  }

  // ---- fetching ---------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) {
      // not JSON
    }
    return response.statusText || 'HTTP ' + response.status;
  }

  async function getJson(path, token, acceptStatuses) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const response = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
    if (!response.ok && !(acceptStatuses || []).includes(response.status)) {
      throw new HttpError(response.status, await errorMessage(response));
    }
    return response.json();
  }

  async function getText(path) {
    const response = await fetch(path, { cache: 'no-store', credentials: 'omit' });
    if (!response.ok) throw new HttpError(response.status, await errorMessage(response));
    return response.text();
  }

  // ---- Prometheus text format -------------------------------------------------------

  function parseValue(s) {
    if (s === '+Inf' || s === 'Inf') return Infinity;
    if (s === '-Inf') return -Infinity;
    if (s === 'NaN') return NaN;
    return Number(s);
  }

  /** Samples `{name, labels, value}` of the exposition text (label values may hold braces). */
  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const name = /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(line);
      if (!name) continue;
      let i = name[0].length;
      const labels = {};
      if (line[i] === '{') {
        i += 1;
        while (i < line.length && line[i] !== '}') {
          const key = /^\s*([A-Za-z_][A-Za-z0-9_]*)="/.exec(line.slice(i));
          if (!key) break;
          i += key[0].length;
          let value = '';
          while (i < line.length && line[i] !== '"') {
            if (line[i] === '\\' && i + 1 < line.length) {
              const c = line[i + 1];
              value += c === 'n' ? '\n' : c;
              i += 2;
            } else {
              value += line[i];
              i += 1;
            }
          }
          labels[key[1]] = value;
          i += 1; // closing quote
          if (line[i] === ',') i += 1;
        }
        i += 1; // closing brace
      }
      const rest = line.slice(i).trim().split(/\s+/);
      samples.push({ name: name[0], labels, value: parseValue(rest[0]) });
    }
    return samples;
  }

  const sum = (samples) => samples.reduce((acc, s) => acc + (isNum(s.value) ? s.value : 0), 0);

  /** Histogram series by route and method: cumulative buckets, sum and count. */
  function histograms(samples, base) {
    const series = new Map();
    const get = (labels) => {
      const key = labels.route + ' ' + labels.method;
      if (!series.has(key)) series.set(key, { route: labels.route, method: labels.method, buckets: [], sum: 0, count: 0 });
      return series.get(key);
    };
    for (const s of samples) {
      if (s.name === base + '_bucket') get(s.labels).buckets.push({ le: parseValue(s.labels.le), count: s.value });
      else if (s.name === base + '_sum') get(s.labels).sum = s.value;
      else if (s.name === base + '_count') get(s.labels).count = s.value;
    }
    for (const h of series.values()) h.buckets.sort((a, b) => a.le - b.le);
    return [...series.values()];
  }

  /** All series added up (they share their bucket bounds). */
  function mergeHistograms(list) {
    const merged = { route: 'all routes', method: 'all', buckets: [], sum: 0, count: 0 };
    const byLe = new Map();
    for (const h of list) {
      merged.sum += h.sum;
      merged.count += h.count;
      for (const b of h.buckets) byLe.set(b.le, (byLe.get(b.le) || 0) + b.count);
    }
    merged.buckets = [...byLe.entries()].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
    return merged;
  }

  /** `histogram_quantile`: linear within the bucket holding the rank; the highest finite
   *  bound when the rank falls in the +Inf bucket. */
  function quantile(q, buckets) {
    if (!buckets.length) return null;
    const total = buckets[buckets.length - 1].count;
    if (!total) return null;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const b of buckets) {
      if (b.count >= rank) {
        if (b.le === Infinity) return lower;
        if (b.count === below) return b.le;
        return lower + ((b.le - lower) * (rank - below)) / (b.count - below);
      }
      lower = b.le;
      below = b.count;
    }
    return lower;
  }

  // ---- charts -----------------------------------------------------------------------

  /** A line of `values` (most recent last). */
  function sparkline(values, label) {
    const w = 760;
    const h = 120;
    const pad = 24;
    const max = Math.max(1e-9, ...values);
    const step = values.length > 1 ? (w - 2 * pad) / (values.length - 1) : 0;
    const points = values.map((v, i) => [pad + i * step, h - pad - ((h - 2 * pad) * v) / max]);
    return svg(
      'svg',
      { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': label, class: 'spark' },
      svg('line', { x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, class: 'axis' }),
      svg('text', { x: pad, y: pad - 8, class: 'tick', text: `max ${max.toFixed(2)}/s` }),
      points.length > 1
        ? svg('polyline', { points: points.map((p) => p.map((c) => c.toFixed(1)).join(',')).join(' '), class: 'line' })
        : null,
      ...points.slice(-1).map((p) => svg('circle', { cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 3, class: 'dot' })),
    );
  }

  /** Bars for `groups` = [{label, values: [..]}], one colour per series. */
  function barChart(groups, series, label, options) {
    const opts = options || {};
    const w = opts.width || 360;
    const h = opts.height || 150;
    const left = 34;
    const bottom = 34;
    const top = 14;
    const max = opts.max || Math.max(1e-9, ...groups.flatMap((g) => g.values.filter(isNum)));
    // Room on the right for the last label when labels are slanted.
    const groupWidth = (w - left - (groups.length > 6 ? 30 : 4)) / Math.max(1, groups.length);
    const barWidth = Math.max(1, (groupWidth - 4) / series.length);
    const y = (v) => top + (h - top - bottom) * (1 - v / max);
    const chart = svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': label, class: 'bars' });
    chart.append(
      svg('line', { x1: left, y1: h - bottom, x2: w, y2: h - bottom, class: 'axis' }),
      svg('text', { x: left - 4, y: top + 4, class: 'tick end', text: opts.integer ? String(Math.round(max)) : max.toFixed(2) }),
      svg('text', { x: left - 4, y: h - bottom, class: 'tick end', text: '0' }),
    );
    groups.forEach((g, gi) => {
      const x0 = left + gi * groupWidth + 2;
      g.values.forEach((v, si) => {
        if (!isNum(v)) return;
        const top_ = y(v);
        chart.append(
          svg(
            'rect',
            { x: (x0 + si * barWidth).toFixed(1), y: top_.toFixed(1), width: Math.max(0.5, barWidth - 1).toFixed(1), height: Math.max(0, h - bottom - top_).toFixed(1), class: 'bar s' + si },
            svg('title', { text: `${binLabel(g.label)}: ${series[si]} ${opts.valueText ? opts.valueText(v) : fmt(v)}` }),
          ),
        );
      });
      const label = binLabel(g.label);
      const text = label.length > 9 ? label.slice(0, 8) + '…' : label;
      const cx = x0 + groupWidth / 2 - 2;
      const rotate = groups.length > 6;
      chart.append(
        svg('text', {
          x: cx.toFixed(1),
          y: h - bottom + 12,
          class: 'tick mid' + (rotate ? ' rot' : ''),
          transform: rotate ? `rotate(30 ${cx.toFixed(1)} ${h - bottom + 12})` : null,
          text,
        }),
      );
    });
    return chart;
  }

  function legend(series) {
    return el('p', { class: 'legend' }, ...series.map((s, i) => el('span', { class: 'key s' + i, text: s })));
  }

  /** Observed rate against mean predicted probability, per bin, with the diagonal. */
  function calibrationChart(bins, label) {
    const size = 220;
    const pad = 30;
    const scale = (v) => pad + (size - 2 * pad) * v;
    const flip = (v) => size - scale(v);
    const chart = svg('svg', { viewBox: `0 0 ${size} ${size}`, role: 'img', 'aria-label': label, class: 'calibration' });
    chart.append(
      svg('rect', { x: pad, y: pad, width: size - 2 * pad, height: size - 2 * pad, class: 'frame' }),
      svg('line', { x1: scale(0), y1: flip(0), x2: scale(1), y2: flip(1), class: 'diagonal' }),
      svg('text', { x: size / 2, y: size - 6, class: 'tick mid', text: 'predicted probability' }),
      svg('text', { x: 10, y: size / 2, class: 'tick mid', transform: `rotate(-90 10 ${size / 2})`, text: 'observed rate' }),
      svg('text', { x: pad, y: size - pad + 12, class: 'tick mid', text: '0' }),
      svg('text', { x: size - pad, y: size - pad + 12, class: 'tick mid', text: '1' }),
    );
    const maxCount = Math.max(1, ...bins.map((b) => b.count));
    const points = bins.filter((b) => b.count > 0);
    if (points.length > 1) {
      chart.append(svg('polyline', { points: points.map((b) => `${scale(b.mean_predicted).toFixed(1)},${flip(b.observed_rate).toFixed(1)}`).join(' '), class: 'line' }));
    }
    for (const b of points) {
      chart.append(
        svg(
          'circle',
          { cx: scale(b.mean_predicted).toFixed(1), cy: flip(b.observed_rate).toFixed(1), r: (2.5 + 5 * Math.sqrt(b.count / maxCount)).toFixed(1), class: 'dot' },
          svg('title', { text: `${fmtFixed(b.lower, 1)}–${fmtFixed(b.upper, 1)}: ${b.count} labelled, predicted ${fmt(b.mean_predicted)}, observed ${fmt(b.observed_rate)}` }),
        ),
      );
    }
    return chart;
  }

  /** A `<details>` that stays open across refreshes once opened. */
  const openDetails = new Set();
  function details(key, summary, ...content) {
    const node = el('details', { 'data-key': key, open: openDetails.has(key) }, el('summary', { text: summary }), ...content);
    node.addEventListener('toggle', () => {
      if (node.open) openDetails.add(key);
      else openDetails.delete(key);
    });
    return node;
  }

  // ---- sections ---------------------------------------------------------------------

  const trafficHistory = [];
  let previousScrape = null;

  function renderMetrics(text, now) {
    const samples = parseMetrics(text);
    const named = (n) => samples.filter((s) => s.name === n);
    const requests = named('titanic_http_requests_total');
    const predictions = named('titanic_predictions_total');
    const total = sum(requests);
    const predicted = sum(predictions);

    let rps = null;
    let pps = null;
    if (previousScrape && now > previousScrape.at) {
      const seconds = (now - previousScrape.at) / 1000;
      rps = Math.max(0, total - previousScrape.total) / seconds;
      pps = Math.max(0, predicted - previousScrape.predicted) / seconds;
      trafficHistory.push(rps);
      if (trafficHistory.length > HISTORY) trafficHistory.shift();
    }
    previousScrape = { at: now, total, predicted };
    setFact('requests-per-second', rps === null ? 'measuring…' : fmtFixed(rps, 2), rps);
    setFact('predictions-per-second', pps === null ? 'measuring…' : fmtFixed(pps, 2), pps);
    setFact('requests-total', fmtCount(total), total);
    const inFlight = named('titanic_http_requests_in_flight');
    setFact('requests-in-flight', inFlight.length ? fmtCount(inFlight[0].value) : '—', inFlight.length ? inFlight[0].value : null);
    $('traffic-chart').replaceChildren(
      trafficHistory.length ? sparkline(trafficHistory, 'Requests per second, oldest first') : el('p', { class: 'note', text: 'Needs two scrapes.' }),
    );

    const classes = new Map();
    for (const s of requests) {
      const cls = String(s.labels.status || '?')[0] + 'xx';
      classes.set(cls, (classes.get(cls) || 0) + s.value);
    }
    $('status-table').tBodies[0].replaceChildren(
      ...[...classes.entries()].sort().map(([cls, n]) =>
        el(
          'tr',
          { id: 'status-' + cls, 'data-status-class': cls },
          el('th', { scope: 'row', text: cls }),
          numCell('requests', n, fmtCount),
          numCell('share', total ? n / total : null, (x) => (isNum(x) ? (100 * x).toFixed(1) + ' %' : '—')),
        ),
      ),
    );
    $('predictions-table').tBodies[0].replaceChildren(
      ...predictions
        .slice()
        .sort((a, b) => (a.labels.model_version + a.labels.outcome).localeCompare(b.labels.model_version + b.labels.outcome))
        .map((s) =>
          el(
            'tr',
            { 'data-model-version': s.labels.model_version, 'data-outcome': s.labels.outcome },
            textCell('model_version', s.labels.model_version),
            textCell('outcome', s.labels.outcome),
            numCell('predictions', s.value, fmtCount),
          ),
        ),
    );

    // Latency.
    const series = histograms(samples, 'titanic_http_request_duration_seconds').filter((h) => h.count > 0);
    series.sort((a, b) => b.count - a.count || a.route.localeCompare(b.route));
    const all = mergeHistograms(series);
    const row = (h, id) =>
      el(
        'tr',
        { id, 'data-route': h.route, 'data-method': h.method },
        el('th', { scope: 'row', text: h.route }),
        el('td', { text: h.method }),
        numCell('count', h.count, fmtCount),
        numCell('mean_ms', h.count ? (1000 * h.sum) / h.count : null, (x) => fmtFixed(x, 3)),
        numCell('p50_ms', scaled(quantile(0.5, h.buckets)), (x) => fmtFixed(x, 3)),
        numCell('p95_ms', scaled(quantile(0.95, h.buckets)), (x) => fmtFixed(x, 3)),
        numCell('p99_ms', scaled(quantile(0.99, h.buckets)), (x) => fmtFixed(x, 3)),
      );
    $('latency-table').tBodies[0].replaceChildren(
      ...series.map((h) => row(h, 'latency-' + idPart(h.method + h.route))),
      ...(series.length ? [row(all, 'latency-all')] : []),
    );
    const predict = series.find((h) => h.route === '/predict' && h.method === 'POST');
    const shown = predict || all;
    $('latency-caption').textContent = `Requests per latency bucket, ${predict ? 'POST /predict' : 'all routes'} (upper bound in milliseconds).`;
    let below = 0;
    const groups = shown.buckets.map((b) => {
      const n = b.count - below;
      below = b.count;
      return { label: b.le === Infinity ? '>' + fmtBound(shown.buckets[shown.buckets.length - 2]) : fmtBound(b), values: [n] };
    });
    $('latency-chart').replaceChildren(
      shown.count
        ? barChart(groups, ['requests'], 'Requests per latency bucket', { width: 760, height: 170, integer: true, valueText: (v) => fmtCount(v) + ' requests' })
        : el('p', { class: 'note', text: 'No requests yet.' }),
    );
  }

  const scaled = (seconds) => (isNum(seconds) ? seconds * 1000 : null);

  function fmtBound(b) {
    if (!b) return '';
    const ms = b.le * 1000;
    return ms < 1 ? ms.toFixed(2) : String(Math.round(ms * 100) / 100);
  }

  function renderHealth(body) {
    setFact('ready-status', body.status, body.status);
    const model = body.components && body.components.model;
    // Public, so the version shows even without a token; `/models` (applied after) agrees.
    if (model && model.version) setFact('served-version', model.version, model.version);
  }

  function renderModels(body) {
    setFact('served-version', body.serving || 'none', body.serving);
    const aliases = Object.entries(body.aliases || {});
    $('aliases').replaceChildren(
      aliases.length
        ? el('ul', { class: 'inline' }, ...aliases.map(([alias, version]) => el('li', { 'data-alias': alias, 'data-version': version, text: `${alias} → ${version}` })))
        : document.createTextNode('none'),
    );
    const versions = body.versions || [];
    setFact('version-count', String(versions.length), versions.length);
  }

  function renderDrift(report) {
    setFact('drift-status', report.status, report.status);
    setFact('dataset-drift', fmtBool(report.dataset_drift), report.dataset_drift);
    $('dataset-drift').setAttribute('data-state', report.dataset_drift ? 'alert' : 'ok');
    setFact('drift-share', fmt(report.drift_share), report.drift_share);
    setFact('drifted-features', fmtCount(report.drifted_features), report.drifted_features);
    setFact('tested-features', fmtCount(report.tested_features), report.tested_features);
    setFact('reference-version', report.reference_version || 'none', report.reference_version);
    const win = report.window || {};
    setFact('window-observations', fmtCount(win.observations), win.observations);

    const features = report.features || [];
    $('drift-table').tBodies[0].replaceChildren(
      ...features.map((f) =>
        el(
          'tr',
          { id: 'drift-row-' + idPart(f.feature), 'data-feature': f.feature, 'data-drifted': String(f.drifted), 'data-psi-level': f.psi_level },
          el('th', { scope: 'row', text: f.feature }),
          textCell('test', f.test),
          numCell('statistic', f.statistic),
          numCell('p_value', f.p_value),
          numCell('psi', f.psi),
          textCell('psi_level', f.psi_level),
          textCell('drifted', fmtBool(f.drifted)),
          numCell('observations', f.observations, fmtCount),
          numCell('missing', f.missing, fmtCount),
        ),
      ),
    );

    const series = ['reference', 'current'];
    $('drift-features').replaceChildren(
      ...features.map((f) => {
        const ref = f.reference || { bins: [] };
        const cur = f.current || { bins: [] };
        const groups = ref.bins.map((b, i) => ({ label: b.label, values: [b.share, cur.bins[i] ? cur.bins[i].share : null] }));
        if (ref.missing_share > 0 || cur.missing_share > 0) groups.push({ label: 'missing', values: [ref.missing_share, cur.missing_share] });
        const verdict = f.drifted ? 'drifted' : f.p_value === null ? 'not tested' : 'no drift';
        return el(
          'article',
          { class: 'card' + (f.drifted ? ' drifted' : ''), id: 'drift-card-' + idPart(f.feature), 'data-feature': f.feature },
          el('h3', {}, document.createTextNode(f.feature + ' '), el('span', { class: 'badge ' + (f.drifted ? 'alert' : 'ok'), text: verdict })),
          el('p', { class: 'small', text: `${f.test}: p = ${fmt(f.p_value)}, PSI = ${fmt(f.psi)} (${f.psi_level}), ${f.observations} observed, ${f.missing} missing` }),
          barChart(groups, series, `Share per bin of ${f.feature}, reference against current`),
          legend(series),
          details(
            'drift-' + f.feature,
            'Shares per bin',
            el(
              'table',
              { class: 'small' },
              el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Bin' }), el('th', { scope: 'col', text: 'Reference' }), el('th', { scope: 'col', text: 'Current' }))),
              el(
                'tbody',
                {},
                ...groups.map((g, i) =>
                  el(
                    'tr',
                    { 'data-bin-index': i, 'data-bin': g.label },
                    el('th', { scope: 'row', text: binLabel(g.label) }),
                    numCell('reference_share', g.values[0]),
                    numCell('current_share', g.values[1]),
                  ),
                ),
                ...(isNum(ref.mean) || isNum(cur.mean)
                  ? [
                      el(
                        'tr',
                        { 'data-bin': 'mean' },
                        el('th', { scope: 'row', text: 'mean' }),
                        numCell('reference_mean', ref.mean),
                        numCell('current_mean', cur.mean),
                      ),
                    ]
                  : []),
              ),
            ),
          ),
        );
      }),
    );
  }

  function renderPerformance(report) {
    const versions = report.versions || [];
    $('performance-table').tBodies[0].replaceChildren(
      ...(versions.length
        ? versions.map((v) =>
            el(
              'tr',
              { id: 'performance-row-' + idPart(v.model_version), 'data-model-version': v.model_version },
              el('th', { scope: 'row', text: v.model_version }),
              numCell('labelled', v.labelled, fmtCount),
              numCell('accuracy', v.accuracy),
              numCell('log_loss', v.log_loss),
              numCell('roc_auc', v.roc_auc),
              numCell('brier', v.brier),
              numCell('predictions', v.predictions, fmtCount),
              numCell('mean_probability', v.mean_probability),
              numCell('estimated_accuracy', v.estimated_accuracy),
            ),
          )
        : [el('tr', {}, el('td', { colspan: 9, text: 'No predictions in the window yet.' }))]),
    );
    $('calibration').replaceChildren(
      ...versions
        .filter((v) => v.labelled > 0)
        .map((v) =>
          el(
            'article',
            { class: 'card', id: 'calibration-' + idPart(v.model_version), 'data-model-version': v.model_version },
            el('h3', { text: `Calibration of ${v.model_version}` }),
            el('p', { class: 'small', text: `${v.labelled} labelled; the diagonal is perfect calibration.` }),
            calibrationChart(v.calibration || [], `Observed survival rate against predicted probability for ${v.model_version}`),
            details(
              'calibration-' + v.model_version,
              'Bins',
              el(
                'table',
                { class: 'small' },
                el('thead', {}, el('tr', {}, ...['Probability', 'Labelled', 'Mean predicted', 'Observed rate'].map((t) => el('th', { scope: 'col', text: t })))),
                el(
                  'tbody',
                  {},
                  ...(v.calibration || []).map((b) =>
                    el(
                      'tr',
                      {},
                      el('th', { scope: 'row', text: `${fmtFixed(b.lower, 1)}–${fmtFixed(b.upper, 1)}` }),
                      numCell('count', b.count, fmtCount),
                      numCell('mean_predicted', b.mean_predicted),
                      numCell('observed_rate', b.observed_rate),
                    ),
                  ),
                ),
              ),
            ),
          ),
        ),
    );
  }

  // ---- the loop ---------------------------------------------------------------------

  function setStatus(state, message) {
    const node = $('status');
    node.setAttribute('data-state', state);
    node.textContent = message;
  }

  /** Forgets what only a token shows, so a refused token leaves no stale numbers. */
  function clearGuarded() {
    for (const id of ['aliases', 'version-count', 'drift-status', 'dataset-drift', 'drift-share', 'drifted-features', 'tested-features', 'reference-version', 'window-observations']) {
      setFact(id, '—', null);
    }
    $('dataset-drift').removeAttribute('data-state');
    for (const id of ['drift-table', 'performance-table']) $(id).tBodies[0].replaceChildren();
    for (const id of ['drift-features', 'calibration']) $(id).replaceChildren();
  }

  let refreshes = 0;
  let timer = null;
  let generation = 0;

  async function refresh() {
    clearTimeout(timer);
    // A refresh started meanwhile (a new token) supersedes this one and owns the timer.
    const current = ++generation;
    const token = storedToken();
    const now = Date.now();
    const guarded = (path) => (token ? getJson(path, token) : Promise.reject(new HttpError(0, 'no token')));
    const [metrics, health, models, drift, performance] = await Promise.allSettled([
      getText('/metrics'),
      getJson('/health/ready', null, [503]),
      guarded('/models'),
      guarded('/monitoring/drift'),
      guarded('/monitoring/performance'),
    ]);
    if (current !== generation) return;
    const problems = [];
    const apply = (result, what, render) => {
      if (result.status === 'fulfilled') {
        try {
          render(result.value);
        } catch (e) {
          problems.push(`${what}: cannot show (${e.message})`);
        }
      } else if (!(result.reason instanceof HttpError && [0, 401, 403].includes(result.reason.status))) {
        problems.push(`${what}: ${result.reason.message}`);
      }
    };
    apply(metrics, '/metrics', (text) => renderMetrics(text, now));
    apply(health, '/health/ready', renderHealth);
    apply(models, '/models', renderModels);
    apply(drift, '/monitoring/drift', renderDrift);
    apply(performance, '/monitoring/performance', renderPerformance);

    const refused = [models, drift, performance].find((r) => r.status === 'rejected' && r.reason instanceof HttpError && (r.reason.status === 401 || r.reason.status === 403));
    if (!token || refused) clearGuarded();
    if (!token) {
      setStatus('no-token', 'No token: open this page as /monitoring#token=<token> or paste a token above. Traffic and latency (public) are shown; the model, drift and performance need a token.');
    } else if (refused) {
      const why = refused.reason.status === 401 ? 'invalid or expired' : 'not allowed here';
      setStatus('unauthorized', `The token was refused (${refused.reason.status}, ${why}: ${refused.reason.message}). Paste another token above.`);
    } else if (problems.length) {
      setStatus('error', 'Some data could not be loaded: ' + problems.join('; '));
    } else {
      setStatus('ok', 'Up to date.');
    }
    refreshes += 1;
    document.body.setAttribute('data-refreshes', String(refreshes));
    $('updated-at').textContent = new Date(now).toISOString();
    $('updated-at').setAttribute('datetime', new Date(now).toISOString());
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function start() {
    $('refresh-seconds').textContent = String(REFRESH_MS / 1000);
    const fromFragment = tokenFromFragment();
    if (fromFragment) storeToken(fromFragment);
    $('token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = $('token-input');
      const token = input.value.trim();
      input.value = '';
      if (token) storeToken(token);
      refresh();
    });
    $('token-forget').addEventListener('click', () => {
      storeToken(null);
      refresh();
    });
    window.addEventListener('hashchange', () => {
      const token = tokenFromFragment();
      if (token) {
        storeToken(token);
        refresh();
      }
    });
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
