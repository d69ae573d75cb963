// Events: the engine's events as they happen (newest first).
import { h, live, s } from './app.js';

const COLORS = { container: '#15803d', image: '#2563eb', network: '#7c3aed', volume: '#db2777' };

export function render(root) {
  const list = h('div', { class: 'card', id: 'events' });
  const type = h('select', {}, ['all', 'container', 'image', 'network', 'volume'].map((t) => h('option', { value: t }, t)));
  type.addEventListener('change', draw);
  root.append(h('h1', {}, 'Events'), h('div', { class: 'toolbar' }, h('label', {}, 'type ', type), h('span', { class: 'muted' }, 'live; the last 500 kept')), list);

  function item(ev) {
    const t = new Date((ev.timeNano ? ev.timeNano / 1e6 : ev.time * 1000));
    const a = ev.Actor?.Attributes || {};
    const el = h('div', { class: 'ev', 'data-action': ev.Action },
      h('span', { class: 'muted' }, t.toLocaleTimeString()), h('span', { class: 'type' }, ev.Type),
      h('span', {}, ev.Action), h('span', { class: 'wrap' }, a.name || (ev.Actor?.ID || '').slice(0, 12), a.image ? ` (${a.image})` : ''));
    el.querySelector('.type').style.color = COLORS[ev.Type] || '';
    return el;
  }
  // The last ten minutes as a strip: one tick per event, coloured by type, newest on the right.
  const strip = s('svg', { class: 'strip', viewBox: '0 0 1000 40', preserveAspectRatio: 'none', 'aria-label': 'events over the last ten minutes' });
  root.insertBefore(strip, list);
  function drawStrip() {
    const now = Date.now() / 1000, want = type.value;
    strip.replaceChildren(s('line', { x1: 0, y1: 39.5, x2: 1000, y2: 39.5, class: 'axis' }),
      ...[0, 2, 4, 6, 8].map((m) => s('text', { x: 1000 - m * 100 - 2, y: 12, 'text-anchor': 'end', class: 'why' }, m ? `-${m} min` : 'now')),
      ...live.events.filter((e) => (want === 'all' || e.Type === want) && now - e.time < 600).map((e) => {
        const x = 1000 - (now - (e.timeNano ? e.timeNano / 1e9 : e.time)) / 600 * 1000;
        return s('rect', { x: x - 1, y: 16, width: 2, height: 22, fill: COLORS[e.Type] || '#64748b' }, s('title', {}, `${e.Type} ${e.Action}`));
      }));
  }
  const timer = setInterval(drawStrip, 5000);

  function draw() {
    drawStrip();
    const want = type.value;
    list.replaceChildren(...live.events.filter((e) => want === 'all' || e.Type === want).slice(-500).reverse().map(item));
  }
  draw();
  const off = live.on((k, ev) => {
    if (k === 'events') draw();
    else if (k === 'event' && (type.value === 'all' || ev.Type === type.value)) { list.prepend(item(ev)); drawStrip(); }
  });
  return () => { off(); clearInterval(timer); };
}
