// Networks: a graph of networks (bridges), the containers on them with their addresses, published ports.
import { api, h, s } from './app.js';

export function render(root) {
  const card = h('div', { class: 'card' });
  root.append(h('h1', {}, 'Networks'), card);
  (async () => {
    const [nets, ctrs] = await Promise.all([api('/networks'), api('/containers/json')]);
    const W = 1100, colW = Math.max(180, W / Math.max(nets.length, 1));
    const nx = new Map(nets.map((n, i) => [n.Name, 20 + i * colW]));
    const parts = [];
    nets.forEach((n) => {
      const x = nx.get(n.Name), subnet = (n.IPAM?.Config || []).map((c) => c.Subnet).join(' ');
      parts.push(s('g', { class: 'net', 'data-net': n.Name }, s('rect', { x, y: 20, width: colW - 30, height: 44, rx: 8, fill: '#c7d2fe', stroke: '#6366f1' }),
        s('text', { x: x + 8, y: 38, class: 'title' }, n.Name), s('text', { x: x + 8, y: 54, class: 'why' }, `${n.Driver} ${subnet}`)));
    });
    const cw = 200, perRow = Math.max(1, Math.floor(W / (cw + 20)));
    ctrs.forEach((c, i) => {
      const x = 20 + (i % perRow) * (cw + 20), y = 150 + Math.floor(i / perRow) * 110;
      const name = (c.Names?.[0] || '').replace(/^\//, '');
      const ports = (c.Ports || []).filter((p) => p.PublicPort).map((p) => `${p.IP || ''}:${p.PublicPort}→${p.PrivatePort}`);
      for (const [net, cfg] of Object.entries(c.NetworkSettings?.Networks || {})) {
        if (!nx.has(net)) continue;
        parts.unshift(s('line', { x1: nx.get(net) + (colW - 30) / 2, y1: 64, x2: x + cw / 2, y2: y, stroke: '#94a3b8' }));
        parts.push(s('text', { x: x + 8, y: y - 6 - 12 * Object.keys(c.NetworkSettings.Networks).indexOf(net), class: 'why' }, `${net}: ${cfg.IPAddress || '-'}`));
      }
      parts.push(s('g', { class: 'ctr' }, s('rect', { x, y, width: cw, height: 44, rx: 6, fill: c.State === 'running' ? '#bbf7d0' : '#e5e7eb', stroke: '#64748b' }),
        s('a', { href: `#/container/${c.Id}` }, s('text', { x: x + 8, y: y + 18 }, name)),
        s('text', { x: x + 8, y: y + 34, class: 'why' }, ports.join(' ').slice(0, 34) || 'no published ports')));
    });
    const hgt = 150 + Math.ceil(ctrs.length / perRow) * 110 + 20;
    card.replaceChildren(s('svg', { class: 'graph', viewBox: `0 0 ${W} ${hgt}` }, parts),
      h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Driver', 'Subnet', 'Gateway', 'Scope'].map((t) => h('th', {}, t)))),
        h('tbody', {}, nets.map((n) => h('tr', {}, h('td', {}, n.Name), h('td', {}, n.Driver),
          h('td', {}, (n.IPAM?.Config || []).map((c) => c.Subnet).join(' ')), h('td', {}, (n.IPAM?.Config || []).map((c) => c.Gateway).join(' ')), h('td', {}, n.Scope))))));
  })().catch((e) => card.replaceChildren(h('p', {}, e.message)));
}
