// The dashboard's shell: helpers, the live stream every page shares, and a hash router.
export const TOKEN = document.querySelector('meta[name="dockyard-token"]').content;

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVGNS = 'http://www.w3.org/2000/svg';
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export async function api(path, { method = 'GET', query } = {}) {
  const qs = query ? '?' + new URLSearchParams(query) : '';
  const r = await fetch('/api' + path + qs, { method, headers: { 'X-Dockyard-Token': TOKEN } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || `${r.status} ${r.statusText}`);
  return body;
}

export function toast(msg, bad = false) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.className = 'toast' + (bad ? ' bad' : '');
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

export function bytes(n) {
  if (!n && n !== 0) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`;
}

export const short = (id) => (id || '').replace(/^sha256:/, '').slice(0, 12);
export const ago = (t) => {
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
};

// One EventSource for the whole page: the container list, stats and engine events.
export const live = {
  containers: [], history: {}, events: [], listeners: new Set(),
  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); },
  emit(kind, data) { for (const fn of this.listeners) fn(kind, data); },
};

function connect() {
  const src = new EventSource('/sse/live');
  const conn = document.getElementById('conn');
  src.onopen = () => conn.classList.add('up');
  src.onerror = () => conn.classList.remove('up');
  src.addEventListener('containers', (e) => { live.containers = JSON.parse(e.data); live.emit('containers'); });
  src.addEventListener('history', (e) => { live.history = JSON.parse(e.data); live.emit('stats'); });
  src.addEventListener('stats', (e) => {
    for (const [id, sample] of Object.entries(JSON.parse(e.data))) {
      const hist = (live.history[id] ||= []);
      hist.push(sample);
      if (hist.length > 60) hist.shift();
    }
    live.emit('stats');
  });
  src.addEventListener('backlog', (e) => { live.events = JSON.parse(e.data); live.emit('events'); });
  src.addEventListener('event', (e) => {
    const ev = JSON.parse(e.data);
    live.events.push(ev);
    if (live.events.length > 500) live.events.shift();
    live.emit('event', ev);
  });
}

// Routes: #/containers, #/container/ID, #/images, #/image/REF, #/networks, #/volumes, #/events.
const routes = {
  containers: () => import('./containers.js'),
  container: () => import('./container.js'),
  images: () => import('./images.js'),
  image: () => import('./images.js'),
  networks: () => import('./networks.js'),
  volumes: () => import('./volumes.js'),
  events: () => import('./events.js'),
};
let cleanup = null;

async function route() {
  const [, page = 'containers', ...rest] = (location.hash || '#/containers').split('/');
  const arg = decodeURIComponent(rest.join('/'));
  const main = document.getElementById('main');
  if (cleanup) { cleanup(); cleanup = null; }
  main.replaceChildren();
  main.dataset.page = page;
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.getAttribute('href').startsWith('#/' + page.replace(/^(container|image)$/, '$1')));
  }
  const mod = await (routes[page] || routes.containers)();
  const render = page === 'image' ? mod.renderImage : mod.render;
  cleanup = render(main, arg) || null;
}

// The token has done its work (the cookie carries it now): keep it out of the address bar and history.
if (new URLSearchParams(location.search).has('token')) history.replaceState(null, '', '/' + location.hash);
connect();
window.addEventListener('hashchange', route);
route();
