// Volumes: size (from system df) and which containers mount them where.
import { api, bytes, h } from './app.js';

export function render(root) {
  const card = h('div', { class: 'card' });
  root.append(h('h1', {}, 'Volumes'), card);
  (async () => {
    const [vols, df, ctrs] = await Promise.all([api('/volumes'), api('/system/df').catch(() => ({})), api('/containers/json', { query: { all: 1 } })]);
    const size = new Map((df.Volumes || []).map((v) => [v.Name, v.UsageData?.Size]));
    const users = new Map();
    for (const c of ctrs) for (const m of c.Mounts || []) if (m.Type === 'volume') {
      if (!users.has(m.Name)) users.set(m.Name, []);
      users.get(m.Name).push([(c.Names?.[0] || '').replace(/^\//, ''), m.Destination, c.Id]);
    }
    card.replaceChildren(h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Driver', 'Size', 'Mounted by', 'Mountpoint'].map((t) => h('th', {}, t)))),
      h('tbody', {}, (vols.Volumes || []).map((v) => h('tr', { 'data-volume': v.Name }, h('td', { class: 'wrap' }, v.Name), h('td', {}, v.Driver),
        h('td', {}, size.get(v.Name) >= 0 ? bytes(size.get(v.Name)) : ''),
        h('td', { class: 'wrap' }, (users.get(v.Name) || []).map(([n, d, id]) => h('div', {}, h('a', { href: `#/container/${id}` }, n), ' at ', h('code', {}, d)))),
        h('td', { class: 'wrap muted' }, v.Mountpoint))))));
  })().catch((e) => card.replaceChildren(h('p', {}, e.message)));
}
