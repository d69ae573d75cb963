// Images: list, pull with progress, remove; an image: its layer stack (size, instruction, shared) and files.
import { ago, api, bytes, h, short, toast, TOKEN } from './app.js';

export function render(root) {
  const body = h('tbody');
  const ref = h('input', { type: 'text', placeholder: 'image to pull, e.g. registry:5000/app:1' });
  const prog = h('progress', { max: 1, value: 0, hidden: true });
  const status = h('span', { class: 'muted', id: 'pull-status' });
  root.append(h('h1', {}, 'Images'),
    h('div', { class: 'toolbar' }, ref, h('button', { id: 'pull', onclick: () => pull(ref.value.trim()) }, 'Pull'), prog, status),
    h('div', { class: 'card' }, h('table', {}, h('thead', {}, h('tr', {}, ['Tags', 'ID', 'Size', 'Created', 'Containers', ''].map((t) => h('th', {}, t)))), body)));

  async function load() {
    const imgs = await api('/images/json');
    body.replaceChildren(...imgs.map((i) => {
      const name = (i.RepoTags || []).find((t) => t !== '<none>:<none>') || short(i.Id);
      return h('tr', { 'data-image': name },
        h('td', { class: 'wrap' }, h('a', { href: `#/image/${encodeURIComponent(i.Id)}` }, (i.RepoTags || [short(i.Id)]).join(', '))),
        h('td', {}, short(i.Id)), h('td', {}, bytes(i.Size)), h('td', {}, ago(i.Created)),
        h('td', {}, i.Containers >= 0 ? i.Containers : ''),
        h('td', {}, h('button', { class: 'danger', onclick: () => remove(i.Id) }, 'Remove')));
    }));
  }

  async function remove(id) {
    if (!confirm('Remove this image?')) return;
    try { await api(`/images/${id}`, { method: 'DELETE' }); load(); } catch (e) { toast(e.message, true); }
  }

  async function pull(image) {
    if (!image) return;
    prog.hidden = false; prog.value = 0; status.textContent = 'pulling…';
    const layers = {};
    try {
      const r = await fetch('/api/pull?' + new URLSearchParams({ image }), { method: 'POST', headers: { 'X-Dockyard-Token': TOKEN } });
      if (!r.ok) throw new Error((await r.json()).message);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '', last = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i); buf = buf.slice(i + 1);
          if (!line.trim()) continue;
          const m = JSON.parse(line);
          if (m.error || m.errorDetail) throw new Error(m.error || m.errorDetail.message);
          if (m.id && m.progressDetail?.total) layers[m.id] = [m.progressDetail.current || 0, m.progressDetail.total];
          if (m.id && /complete|exists/i.test(m.status || '') && layers[m.id]) layers[m.id][0] = layers[m.id][1];
          const done = Object.values(layers).reduce((a, [c]) => a + c, 0), total = Object.values(layers).reduce((a, [, t]) => a + t, 0);
          prog.value = total ? done / total : prog.value;
          last = m.status || last;
          status.textContent = `${last} ${total ? bytes(done) + ' / ' + bytes(total) : ''}`;
        }
      }
      prog.value = 1;
      load();
    } catch (e) { status.textContent = ''; toast(`pull: ${e.message}`, true); prog.hidden = true; }
  }

  load();
}

export function renderImage(root, ref) {
  root.append(h('h1', {}, 'Image ', short(ref) || ref), h('p', { class: 'muted' }, 'loading…'));
  (async () => {
    const [img, all, hist] = await Promise.all([api(`/images/${ref}/json`), api('/images/json'), api(`/images/${ref}/history`)]);
    // Which other images hold each layer: compare their layer lists (chains: a layer is shared when
    // everything under it is the same too, as the store shares it).
    const others = await Promise.all(all.filter((i) => i.Id !== img.Id).map((i) => api(`/images/${i.Id}/json`).catch(() => null)));
    const mine = img.RootFS?.Layers || [];
    const sharedWith = mine.map((_, k) => others.filter((o) => o && mine.slice(0, k + 1).every((d, j) => (o.RootFS?.Layers || [])[j] === d))
      .map((o) => (o.RepoTags || [short(o.Id)])[0]));
    const made = hist.filter((x) => x.Size > 0 || /ADD|COPY|RUN/.test(x.CreatedBy)).reverse();
    root.replaceChildren(h('h1', {}, (img.RepoTags || [])[0] || short(img.Id)),
      h('p', { class: 'muted' }, `${short(img.Id)} · ${bytes(img.Size)} · ${img.Os}/${img.Architecture} · ${mine.length} layers`));
    const stack = h('div', { class: 'card', id: 'layers' }, h('h2', {}, 'Layers (top last, as they were made)'));
    const max = Math.max(1, ...hist.map((x) => x.Size));
    const files = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Choose a layer to see the files it adds, changes and deletes.'));
    let layerFiles = null;
    mine.forEach((d, k) => {
      const step = made[k] || {};
      const shared = sharedWith[k].length;
      stack.append(h('div', { class: 'layerbar', 'data-layer': d },
        h('button', { onclick: () => showFiles(k) }, `#${k + 1}`),
        h('div', { class: 'bar' + (shared ? ' shared' : '') }), h('span', {}, bytes(step.Size || 0)),
        h('code', { class: 'wrap' }, (step.CreatedBy || '').slice(0, 120)),
        shared ? h('span', { class: 'muted' }, `shared with ${sharedWith[k].join(', ')}`) : ''));
      stack.lastChild.querySelector('.bar').style.width = `${Math.max(2, (step.Size || 0) / max * 240)}px`;
    });
    root.append(stack, files);

    async function showFiles(k) {
      files.replaceChildren(h('p', { class: 'muted' }, 'reading the layers (docker save)…'));
      try {
        layerFiles ||= await api(`/layers/${encodeURIComponent(img.Id)}`);
      } catch (e) { files.replaceChildren(h('p', {}, e.message)); return; }
      const l = layerFiles[k];
      files.replaceChildren(h('h2', {}, `Layer #${k + 1}: ${l.Count} entries, ${bytes(l.Size)}`), h('code', {}, l.CreatedBy),
        h('p', {}, h('span', { class: 'added' }, 'added '), h('span', { class: 'changed' }, 'changed '), h('span', { class: 'deleted' }, 'deleted')),
        tree(l.Files), l.Truncated ? h('p', { class: 'muted' }, 'only the first 5000 shown') : '');
    }
  })().catch((e) => root.replaceChildren(h('p', {}, e.message)));
}

function tree(files) {
  const rootNode = { kids: new Map() };
  for (const f of files) {
    let n = rootNode;
    for (const part of f.path.split('/')) {
      if (!n.kids.has(part)) n.kids.set(part, { kids: new Map() });
      n = n.kids.get(part);
    }
    n.file = f;
  }
  const draw = (n, name, depth) => {
    if (!n.kids.size) {
      const f = n.file || {};
      return h('div', { class: `f ${f.change || ''}` }, name, f.size ? h('span', { class: 'muted' }, ' ', bytes(f.size)) : '');
    }
    const kids = [...n.kids.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => draw(v, k, depth + 1));
    return h('details', { open: depth < 1 }, h('summary', { class: n.file?.change || '' }, name + '/'), kids);
  };
  return h('div', { class: 'tree' }, [...rootNode.kids.entries()].map(([k, v]) => draw(v, k, 0)));
}
