// Events: the engine's events as they happen (newest first).
import { h, live } from './app.js';

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
  function draw() {
    const want = type.value;
    list.replaceChildren(...live.events.filter((e) => want === 'all' || e.Type === want).slice(-500).reverse().map(item));
  }
  draw();
  return live.on((k, ev) => {
    if (k === 'events') draw();
    else if (k === 'event' && (type.value === 'all' || ev.Type === type.value)) list.prepend(item(ev));
  });
}
