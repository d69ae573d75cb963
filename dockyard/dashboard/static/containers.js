// Containers: live list (state, health, ports, uptime, CPU/memory sparklines), actions, compose groups.
import { api, bytes, h, live, s, short, toast } from './app.js';

const PROJECT = 'com.docker.compose.project';

export function sparkline(values, max) {
  const w = 80, hgt = 22;
  const top = Math.max(max || 0, ...values, 1e-9);
  const pts = values.map((v, i) => `${(i / Math.max(values.length - 1, 1)) * w},${hgt - 1 - (v / top) * (hgt - 2)}`);
  return s('svg', { viewBox: `0 0 ${w} ${hgt}`, 'aria-hidden': 'true' },
    s('line', { x1: 0, y1: hgt - 0.5, x2: w, y2: hgt - 0.5, class: 'base' }), s('polyline', { points: pts.join(' ') }));
}

export function health(status) {
  const m = /\((healthy|unhealthy|health: starting)\)/.exec(status || '');
  return m ? m[1].replace('health: ', '') : '';
}

export async function act(id, action) {
  try {
    if (action === 'remove') {
      if (!confirm('Remove this container (and stop it if it runs)?')) return;
      await api(`/containers/${id}`, { method: 'DELETE', query: { force: 1 } });
    } else {
      await api(`/containers/${id}/${action}`, { method: 'POST' });
    }
  } catch (e) {
    toast(`${action}: ${e.message}`, true);
  }
}

export function actionButtons(c) {
  const b = (action, label, cls) => h('button', { 'data-action': action, class: cls, onclick: () => act(c.Id, action) }, label);
  const st = c.State;
  return h('div', { class: 'actions' },
    st === 'running' ? [b('stop', 'Stop'), b('restart', 'Restart'), b('pause', 'Pause')]
      : st === 'paused' ? [b('unpause', 'Resume'), b('stop', 'Stop')]
        : [b('start', 'Start')],
    b('remove', 'Remove', 'danger'));
}

function portLinks(c) {
  const seen = new Set();
  return (c.Ports || []).filter((p) => p.PublicPort).filter((p) => {
    const k = `${p.PublicPort}/${p.Type}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  }).map((p) => {
    const host = !p.IP || p.IP === '0.0.0.0' || p.IP === '::' ? location.hostname : p.IP;
    const label = `${p.PublicPort}→${p.PrivatePort}/${p.Type}`;
    return p.Type === 'tcp' ? h('a', { href: `http://${host.includes(':') ? `[${host}]` : host}:${p.PublicPort}/`, target: '_blank', rel: 'noopener' }, label, ' ')
      : h('span', {}, label, ' ');
  });
}

function statCells(id) {
  const hist = live.history[id] || [];
  const last = hist[hist.length - 1];
  return [
    h('td', { class: 'hide-narrow' }, h('div', { class: 'spark cpu', 'data-samples': hist.length }, sparkline(hist.map((x) => x.cpu), 100 / 20), last ? `${last.cpu.toFixed(1)} %` : '')),
    h('td', { class: 'hide-narrow' }, h('div', { class: 'spark mem' }, sparkline(hist.map((x) => x.mem), last ? last.limit / 20 : 0), last ? bytes(last.mem) : '')),
  ];
}

export function render(root) {
  const body = h('tbody');
  const filter = h('input', { type: 'search', placeholder: 'Filter by name or image', oninput: draw });
  root.append(h('h1', {}, 'Containers'), h('div', { class: 'toolbar' }, filter, h('span', { class: 'muted', id: 'count' })),
    h('div', { class: 'card' }, h('table', { id: 'containers' },
      h('thead', {}, h('tr', {}, ['Name', 'Image', 'State', 'Ports', 'Uptime', 'CPU', 'Memory', ''].map((t, i) =>
        h('th', { class: [1, 4, 5, 6].includes(i) ? 'hide-narrow' : '' }, t)))), body)));

  function row(c) {
    const name = (c.Names?.[0] || short(c.Id)).replace(/^\//, '');
    const hl = health(c.Status);
    const tr = h('tr', { 'data-id': c.Id, 'data-name': name, 'data-state': c.State },
      h('td', {}, h('a', { href: `#/container/${c.Id}` }, name)),
      h('td', { class: 'hide-narrow wrap' }, h('a', { href: `#/image/${encodeURIComponent(c.Image)}` }, c.Image)),
      h('td', {}, h('span', { class: `state ${c.State}` }, c.State), hl && h('span', { class: `health ${hl.replace(' ', '')}` }, hl)),
      h('td', {}, portLinks(c)),
      h('td', { class: 'hide-narrow muted' }, c.State === 'running' ? (c.Status || '').replace(/ \(.*\)$/, '') : c.Status),
      ...(c.State === 'running' ? statCells(c.Id) : [h('td', { class: 'hide-narrow' }), h('td', { class: 'hide-narrow' })]),
      h('td', {}, actionButtons(c)));
    return tr;
  }

  function draw() {
    const f = filter.value.toLowerCase();
    const list = live.containers.filter((c) => !f || (c.Names || []).join(' ').toLowerCase().includes(f) || c.Image.toLowerCase().includes(f));
    const groups = new Map();
    for (const c of list) {
      const p = c.Labels?.[PROJECT] || '';
      if (!groups.has(p)) groups.set(p, []);
      groups.get(p).push(c);
    }
    const rows = [];
    for (const p of [...groups.keys()].sort((a, b) => (a === '') - (b === '') || a.localeCompare(b))) {
      if (p || groups.size > 1) {
        rows.push(h('tr', { class: 'group', 'data-project': p }, h('th', { colspan: 8 }, p ? `compose project: ${p}` : 'standalone')));
      }
      rows.push(...groups.get(p).map(row));
    }
    body.replaceChildren(...rows);
    root.querySelector('#count').textContent = `${list.length} of ${live.containers.length}`;
  }

  function drawStats() {
    for (const tr of body.querySelectorAll('tr[data-state="running"]')) {
      const cells = statCells(tr.dataset.id);
      tr.children[5].replaceWith(cells[0]);
      tr.children[6].replaceWith(cells[1]);
    }
  }

  draw();
  return live.on((kind) => { if (kind === 'containers') draw(); else if (kind === 'stats') drawStats(); });
}
