// A container: logs, inspect, top, anatomy (from /dockyard/containers/{id}/internals) and the trace.
import { api, bytes, h, live, s, short, TOKEN } from './app.js';
import { actionButtons, health } from './containers.js';

export function render(root, id) {
  const head = h('div', { class: 'toolbar' });
  const pane = h('div', { class: 'card' });
  const tabs = ['Logs', 'Inspect', 'Top', 'Anatomy', 'Trace'];
  let current = 'Logs', stopTab = null;
  const bar = h('div', { class: 'tabs' }, tabs.map((t) => h('button', { 'data-tab': t, onclick: () => show(t) }, t)));
  root.append(head, bar, pane);

  function drawHead() {
    const c = live.containers.find((x) => x.Id === id || x.Id.startsWith(id) || (x.Names || []).includes('/' + id));
    if (!c) { head.replaceChildren(h('h1', {}, short(id)), h('span', { class: 'muted' }, 'not in the list (removed?)')); return; }
    const hl = health(c.Status);
    head.replaceChildren(h('h1', {}, (c.Names?.[0] || '').replace(/^\//, '')),
      h('span', { class: `state ${c.State}`, id: 'state' }, c.State), hl && h('span', { class: 'health' }, hl),
      h('span', { class: 'muted' }, c.Image, ' · ', c.Status), actionButtons(c));
  }

  function show(t) {
    current = t;
    if (stopTab) { stopTab(); stopTab = null; }
    for (const b of bar.children) b.classList.toggle('active', b.dataset.tab === t);
    pane.replaceChildren();
    const r = ({ Logs: logs, Inspect: inspect, Top: top, Anatomy: anatomy, Trace: trace })[t](pane, id);
    stopTab = r instanceof Promise ? () => r.then((f) => f && f()) : r || null;
  }

  drawHead();
  show(current);
  const off = live.on((k) => { if (k === 'containers') drawHead(); });
  return () => { off(); if (stopTab) stopTab(); };
}

function logs(pane, id) {
  const box = h('div', { class: 'logs', id: 'logs' });
  const search = h('input', { type: 'search', placeholder: 'Search the log', oninput: refilter });
  const follow = h('input', { type: 'checkbox', checked: true });
  const errOnly = h('input', { type: 'checkbox' });
  pane.append(h('div', { class: 'toolbar' }, search, h('label', {}, follow, ' follow'),
    h('label', {}, errOnly, ' stderr only'), h('span', { class: 'muted' }, 'stdout ', h('span', {}, '■'), ' stderr ', h('span', { class: 'err' }, '■'))), box);
  errOnly.addEventListener('change', refilter);

  function visible(line) {
    const q = search.value.toLowerCase();
    return (!errOnly.checked || line.dataset.s === 'err') && (!q || line.dataset.t.toLowerCase().includes(q));
  }
  function mark(el) {
    const q = search.value, t = el.dataset.t, i = q ? t.toLowerCase().indexOf(q.toLowerCase()) : -1;
    el.lastChild.replaceWith(i < 0 ? h('span', {}, t) : h('span', {}, t.slice(0, i), h('mark', {}, t.slice(i, i + q.length)), t.slice(i + q.length)));
  }
  function refilter() { for (const el of box.children) { el.hidden = !visible(el); mark(el); } }

  // Follow ends when the container stops (an "end" event); when it runs again, follow on from the
  // last line seen (since=), so nothing is shown twice.
  let src = null, last = '', ended = false;
  const nanos = (ts) => BigInt(Date.parse(ts.replace(/\.\d+/, ''))) * 1000000n + BigInt(((/\.(\d+)/.exec(ts) || [])[1] || '').padEnd(9, '0').slice(0, 9));
  function open() {
    // since= as seconds.nanoseconds: what dockerd takes (RFC 3339 only our daemon does).
    const since = last && `${Date.parse(last.replace(/\.\d+/, '')) / 1000}.${((/\.(\d+)/.exec(last) || [])[1] || '').padEnd(9, '0').slice(0, 9)}`;
    const q = last ? `since=${since}&tail=all` : 'tail=500';
    const after = last ? nanos(last) : -1n;
    src = new EventSource(`/sse/logs/${encodeURIComponent(id)}?${q}`);
    ended = false;
    src.addEventListener('end', () => { src.close(); ended = true; });
    src.addEventListener('log', (e) => {
      const l = JSON.parse(e.data);
      if (after >= 0n && l.ts && nanos(l.ts) <= after) return;  // since= is inclusive: already shown
      last = l.ts || last;
      const el = h('div', { class: l.s, 'data-s': l.s, 'data-t': l.t }, h('span', { class: 'ts' }, l.ts.slice(11, 19)), h('span', {}, l.t));
      el.hidden = !visible(el);
      if (search.value) mark(el);
      box.append(el);
      while (box.children.length > 5000) box.firstChild.remove();
      if (follow.checked) box.scrollTop = box.scrollHeight;
    });
  }
  open();
  const off = live.on((k) => {
    const c = k === 'containers' && live.containers.find((x) => x.Id.startsWith(id) || x.Id === id);
    if (c && c.State === 'running' && ended) open();
  });
  return () => { off(); src.close(); };
}

async function inspect(pane, id) {
  const data = await api(`/containers/${id}/json`);
  pane.append(h('pre', { class: 'json' }, JSON.stringify(data, null, 2)));
}

function top(pane, id) {
  const load = async () => {
    try {
      const t = await api(`/containers/${id}/top`);
      pane.replaceChildren(h('table', {}, h('thead', {}, h('tr', {}, t.Titles.map((x) => h('th', {}, x)))),
        h('tbody', {}, t.Processes.map((p) => h('tr', {}, p.map((x) => h('td', { class: 'wrap' }, x)))))));
    } catch (e) { pane.replaceChildren(h('p', { class: 'muted' }, e.message)); }
  };
  load();
  const timer = setInterval(load, 3000);
  return () => clearInterval(timer);
}

// -- the anatomy picture ----------------------------------------------------------------------
const trunc = (t, n) => (t && t.length > n ? t.slice(0, n - 1) + '…' : t || '');

function box(x, y, w, hgt, fill, lines, opts = {}) {
  return s('g', { class: opts.cls || '' }, s('rect', { x, y, width: w, height: hgt, rx: 5, fill, stroke: opts.stroke || '#94a3b8' }),
    lines.map((l, i) => s('text', { x: x + 8, y: y + 16 + i * 14, class: i === 0 ? '' : 'why' }, trunc(l, Math.floor((w - 12) / 6.2)))));
}

export function anatomyPicture(info, usage) {
  const W = 1100, parts = [];
  // Filesystem: the writable layer over the image's layers (top first, as overlay stacks them).
  const fs = info.Rootfs || {};
  const lower = fs.Lower || [];
  let y = 40;
  parts.push(s('text', { x: 10, y: 24, class: 'title' }, 'Root filesystem (overlay)'));
  parts.push(box(10, y, 400, 38, '#fde68a', ['writable layer (upperdir)', trunc(fs.Upper, 70)]));
  y += 44;
  for (const l of lower) {
    const init = l.Role === 'init layer';
    parts.push(box(10, y, 400, 38, init ? '#e0e7ff' : '#bfdbfe', [`${l.Role}${l.DiffID ? ' · ' + short(l.DiffID) : ''}`, l.Why]));
    y += 44;
  }
  parts.push(s('text', { x: 10, y: y + 10, class: 'why' }, trunc(fs.Why, 75)));
  const fsEnd = y + 20;

  // Namespaces: own (coloured) or shared with the host (grey).
  parts.push(s('text', { x: 440, y: 24, class: 'title' }, 'Namespaces'));
  (info.Namespaces || []).forEach((ns, i) => {
    parts.push(box(440, 40 + i * 44, 300, 38, ns.Shared ? '#e5e7eb' : '#bbf7d0',
      [`${ns.Type}: ${ns.Shared ? 'shared with the host' : 'its own'} (${ns.Inode})`, ns.Why], { cls: `ns ${ns.Shared ? 'shared' : 'own'}` }));
  });

  // Cgroup limits beside current usage.
  parts.push(s('text', { x: 770, y: 24, class: 'title' }, 'Cgroup limits'));
  const limits = (info.Cgroups?.Limits || []).filter((l) => l.Value !== null && l.Value !== undefined);
  limits.forEach((l, i) => {
    const yy = 40 + i * 44;
    const label = `${l.Name}: ${typeof l.Value === 'number' && /memory/.test(l.Name) ? bytes(l.Value) : l.Value}`;
    const g = [box(770, yy, 320, 38, '#f5f5f4', [label, l.Why])];
    if (l.Name === 'memory' && usage) {
      const frac = Math.min(1, usage.mem / l.Value);
      g.push(s('rect', { x: 770, y: yy + 34, width: 320 * frac, height: 4, fill: '#7c3aed' }));
      g.push(s('text', { x: 1085, y: yy + 16, 'text-anchor': 'end', class: 'usage' }, `using ${bytes(usage.mem)}`));
    }
    if (l.Name === 'pids' && usage) g.push(s('text', { x: 1085, y: yy + 16, 'text-anchor': 'end', class: 'usage' }, `${usage.cpu.toFixed(1)} % CPU`));
    parts.push(s('g', { class: `limit limit-${l.Name}` }, g));
  });
  if (!limits.length) parts.push(s('text', { x: 770, y: 56, class: 'why' }, 'no cgroup (not running)'));

  // Network path: eth0 → veth → bridge → DNAT rule → published port.
  let ny = Math.max(fsEnd, 40 + (info.Namespaces || []).length * 44, 40 + limits.length * 44) + 30;
  const net = info.Network || {};
  parts.push(s('text', { x: 10, y: ny, class: 'title' }, `Network (${net.Mode || 'none'})`));
  ny += 16;
  const dnat = (net.Rules || []).filter((r) => /dnat to/.test(r.Rule));
  for (const ifc of net.Interfaces || []) {
    const hops = [
      ['#bbf7d0', `${ifc.Container} ${(ifc.Addresses || []).join(' ')}`, 'in the container'],
      ['#bfdbfe', `veth ${ifc.Host}`, 'host end of the pair'],
      ['#c7d2fe', `bridge ${ifc.Bridge}`, (net.Gateways || []).join(' ')],
    ];
    for (const r of dnat) if ((ifc.Addresses || []).some((a) => r.Rule.includes(a.split('/')[0]))) {
      const m = /daddr ([^ ]+) .*dport (\d+) dnat to ([^ ]+)/.exec(r.Rule) || /dport (\d+) dnat to ([^ ]+)/.exec(r.Rule);
      hops.push(['#fde68a', 'DNAT ' + trunc(r.Rule.replace(/^.*?(tcp|udp)/, '$1'), 40), net.Table || '']);
      if (m) hops.push(['#fecaca', `published ${m.length === 4 ? m[1] + ':' + m[2] : m[1]}`, 'reachable on the host']);
    }
    hops.forEach(([fill, a, b], i) => {
      const x = 10 + i * 215;
      parts.push(box(x, ny, 195, 38, fill, [a, b], { cls: 'hop' }));
      if (i) parts.push(s('line', { x1: x - 20, y1: ny + 19, x2: x, y2: ny + 19, stroke: '#475569', 'marker-end': 'url(#arrow)' }));
    });
    ny += 50;
  }
  if (!(net.Interfaces || []).length) { parts.push(s('text', { x: 10, y: ny + 14, class: 'why' }, 'no interfaces of its own')); ny += 30; }

  // Mounts.
  ny += 14;
  parts.push(s('text', { x: 10, y: ny, class: 'title' }, 'Mounts'));
  (info.Mounts || []).forEach((m, i) => {
    const col = i % 3, rowi = Math.floor(i / 3);
    parts.push(box(10 + col * 365, ny + 10 + rowi * 44, 355, 38, m.Type === 'bind' || m.Type === 'volume' ? '#fbcfe8' : '#f1f5f9',
      [`${m.Target} (${m.Type})`, m.Why || m.Source], { cls: 'mount' }));
  });
  ny += 20 + Math.ceil((info.Mounts || []).length / 3) * 44;
  const defs = s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' },
    s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#475569' })));
  return s('svg', { class: 'anatomy', viewBox: `0 0 ${W} ${ny}`, role: 'img', 'aria-label': `anatomy of ${info.Name}` }, defs, parts);
}

async function anatomy(pane, id) {
  let info;
  try {
    info = await api(`/dockyard/containers/${id}/internals`);
  } catch (e) {
    pane.append(h('p', { class: 'muted' }, `No anatomy: ${e.message} (it needs a Dockyard daemon; dockerd has no /dockyard/ endpoints).`));
    return;
  }
  const draw = () => {
    const hist = live.history[info.Id] || [];
    pane.replaceChildren(h('p', { class: 'muted' }, `PID ${info.Process?.HostPid ?? '-'} on the host, 1 inside · monitored by ${info.Monitor?.Runtime || ''} under conmon`),
      anatomyPicture(info, hist[hist.length - 1]));
  };
  draw();
  return live.on((k) => { if (k === 'stats') draw(); });
}

async function trace(pane, id) {
  const steps = await api('/trace', { query: { object: id } });
  if (!steps.length) { pane.append(h('p', { class: 'muted' }, 'No trace (dockerd, or the daemon restarted since).')); return; }
  const t0 = Math.min(...steps.map((x) => x.Start || x.Time)), t1 = Math.max(...steps.map((x) => x.Time));
  const span = Math.max(t1 - t0, 0.001), W = 1100, rowH = 18;
  const colors = { mount: '#a855f7', netns: '#3b82f6', link: '#3b82f6', addr: '#3b82f6', route: '#3b82f6', nft: '#f59e0b', iptables: '#f59e0b', cgroup: '#06b6d4', runtime: '#22c55e', file: '#94a3b8', snapshot: '#a855f7', volume: '#ec4899' };
  const rows = steps.map((st, i) => {
    const x = 260 + ((st.Start || st.Time) - t0) / span * (W - 270);
    const w = Math.max(2, (st.DurationMs || 0) / 1000 / span * (W - 270));
    return s('g', { class: 'step' }, s('title', {}, `${st.Op}\n→ ${st.Result}\n${st.Why || ''}`),
      s('text', { x: 4, y: 14 + i * rowH }, `${st.Area}: ${trunc(st.Op, 36)}`),
      s('rect', { x, y: 4 + i * rowH, width: w, height: 12, fill: st.OK ? colors[st.Area] || '#64748b' : '#ef4444' }));
  });
  pane.append(h('p', { class: 'muted' }, `${steps.length} host changes over ${(span * 1000).toFixed(0)} ms (hover a bar for the kernel's answer and why)`),
    s('svg', { class: 'timeline', viewBox: `0 0 ${W} ${steps.length * rowH + 10}` }, rows),
    h('table', {}, h('tbody', {}, steps.map((st) => h('tr', {}, h('td', {}, st.Area), h('td', { class: 'wrap' }, st.Op, h('div', { class: 'muted' }, st.Why || '')),
      h('td', { class: 'wrap' }, st.Result), h('td', {}, st.DurationMs != null ? `${st.DurationMs} ms` : ''))))));
}
void TOKEN;
