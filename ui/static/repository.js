// The repository screen: upload photos (a progress bar per file, duplicates marked), a grid of
// thumbnails newest first that loads the next keyset page as it scrolls into view, and filters
// by label (chips from GET /v1/labels: every chosen label must be in the photo) and box score.
import { api, pictureUrl, postWithProgress } from './api.js';
import { byId, debounce, fill, formatNumber, h, showError } from './dom.js';

const PAGE_SIZE = 24;
const UPLOADS_AT_ONCE = 2;
const chosen = new Set();
const grid = { generation: 0, nextToken: null, done: false, loading: false, shown: 0, urls: [] };
let observer = null;

function minScore() {
  return Number(byId('repo-min-score').value);
}

function query(pageToken) {
  const score = minScore();
  return {
    page_size: PAGE_SIZE,
    label: [...chosen],
    min_score: score > 0 ? score : undefined,
    page_token: pageToken || undefined,
  };
}

// --- the grid

function card(image) {
  const name = image.originalName || image.id;
  const picture = h('img', { alt: name, class: 'thumb', width: 256, height: 192 });
  const labels = image.labels.map((label) => `${label.name} ${label.count}`).join(', ');
  const node = h(
    'li',
    { dataset: { id: image.id } },
    h('a', { class: 'card', href: `#/photo/${encodeURIComponent(image.id)}` },
      picture,
      h('span', { class: 'card-name' }, name),
      h('span', { class: 'card-labels muted' }, labels || 'nothing detected')),
  );
  const generation = grid.generation;
  pictureUrl(`/v1/images/${encodeURIComponent(image.id)}/thumbnail`)
    .then((url) => {
      grid.urls.push(url);
      if (generation === grid.generation) picture.src = url;
    })
    .catch(() => picture.classList.add('broken'));
  return node;
}

function statusText() {
  if (grid.shown === 0 && grid.done) {
    return chosen.size || minScore() > 0 ? 'No photo matches these filters.' : 'No photo yet: upload some above.';
  }
  const count = `${grid.shown} ${grid.shown === 1 ? 'photo' : 'photos'}`;
  return grid.done ? `${count}, newest first.` : `${count} so far, newest first; more below.`;
}

async function loadPage() {
  if (grid.loading || grid.done) return;
  grid.loading = true;
  const generation = grid.generation;
  byId('repo-grid').setAttribute('aria-busy', 'true');
  try {
    const page = await api('/v1/images', { query: query(grid.nextToken) });
    if (generation !== grid.generation) return;
    byId('repo-grid').append(...page.images.map(card));
    grid.shown += page.images.length;
    grid.nextToken = page.nextPageToken || null;
    grid.done = grid.nextToken === null;
    showError(byId('repo-error'), null);
  } catch (error) {
    if (generation !== grid.generation) return;
    grid.done = true;
    showError(byId('repo-error'), error);
  } finally {
    if (generation === grid.generation) {
      grid.loading = false;
      byId('repo-grid').removeAttribute('aria-busy');
      byId('repo-status').textContent = statusText();
      byId('repo-more').hidden = grid.done;
      // The sentinel may still be in view (a tall screen): fetch on until it is not.
      if (!grid.done && sentinelVisible()) loadPage();
    }
  }
}

function sentinelVisible() {
  if (byId('screen-repository').hidden) return false;
  const box = byId('repo-sentinel').getBoundingClientRect();
  return box.top < window.innerHeight + 400;
}

export function resetGrid() {
  grid.generation += 1;
  grid.urls.forEach((url) => URL.revokeObjectURL(url));
  Object.assign(grid, { nextToken: null, done: false, loading: false, shown: 0, urls: [] });
  fill(byId('repo-grid'));
  byId('repo-status').textContent = 'Loading…';
  loadPage();
}

// --- the label chips

async function loadLabels() {
  try {
    const answer = await api('/v1/labels');
    const known = answer.labels.map((label) => label.name);
    const missing = [...chosen].filter((name) => !known.includes(name));
    fill(
      byId('repo-labels'),
      answer.labels.length + missing.length === 0 ? h('span', { class: 'muted' }, 'No labels yet.') : null,
      [...answer.labels, ...missing.map((name) => ({ name, images: 0 }))].map((label) =>
        h('button', {
          type: 'button',
          class: 'chip toggle',
          dataset: { label: label.name },
          'aria-pressed': chosen.has(label.name) ? 'true' : 'false',
          onclick: (event) => {
            const on = !chosen.has(label.name);
            if (on) chosen.add(label.name);
            else chosen.delete(label.name);
            event.currentTarget.setAttribute('aria-pressed', on ? 'true' : 'false');
            resetGrid();
          },
        }, `${label.name} (${label.images})`)),
    );
  } catch (error) {
    showError(byId('repo-error'), error);
  }
}

// --- uploads

function uploadRow(file) {
  const progress = h('progress', { max: 1, value: 0, 'aria-label': `Upload of ${file.name}` });
  const state = h('span', { class: 'upload-state' }, 'Waiting…');
  const node = h('li', { class: 'upload-row' }, h('span', { class: 'upload-name' }, file.name), progress, state);
  return { node, progress, state };
}

async function uploadOne(file, row) {
  const form = new FormData();
  form.append('image', file, file.name);
  row.state.textContent = 'Uploading…';
  try {
    const { status, body } = await postWithProgress('/v1/images', form, (fraction) => {
      row.progress.value = fraction;
      if (fraction >= 1) row.state.textContent = 'Detecting…';
    });
    const found = body.image.labels.reduce((sum, label) => sum + label.count, 0);
    if (body.duplicate || status === 200) {
      row.node.classList.add('duplicate');
      row.state.textContent = 'Duplicate: already stored';
    } else {
      row.node.classList.add('stored');
      row.state.textContent = `Stored · ${found} ${found === 1 ? 'object' : 'objects'}`;
    }
  } catch (error) {
    row.node.classList.add('failed');
    row.state.textContent = error.message;
  }
}

async function upload(files) {
  const queue = files.map((file) => {
    const row = uploadRow(file);
    byId('repo-uploads').append(row.node);
    return () => uploadOne(file, row);
  });
  const workers = Array.from({ length: Math.min(UPLOADS_AT_ONCE, queue.length) }, async () => {
    while (queue.length) await queue.shift()();
  });
  await Promise.all(workers);
  await loadLabels();
  resetGrid();
}

// --- the screen

export function initRepository() {
  const input = byId('repo-files');
  input.addEventListener('change', () => {
    const files = [...input.files];
    input.value = '';
    if (files.length) upload(files);
  });
  const drop = byId('repo-drop');
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    const files = [...event.dataTransfer.files].filter((file) => file.type.startsWith('image/'));
    if (files.length) upload(files);
  });
  const slider = byId('repo-min-score');
  const regrid = debounce(resetGrid, 300);
  slider.addEventListener('input', () => {
    byId('repo-min-score-value').textContent = formatNumber(slider.value);
    regrid();
  });
  byId('repo-more').addEventListener('click', loadPage);
  observer = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadPage();
  }, { rootMargin: '400px' });
  observer.observe(byId('repo-sentinel'));
}

export function showRepository() {
  // What the photo screen did last (a delete), said once.
  const notice = sessionStorage.getItem('detection-service-notice');
  sessionStorage.removeItem('detection-service-notice');
  byId('repo-notice').textContent = notice || '';
  byId('repo-notice').hidden = !notice;
  loadLabels();
  resetGrid();
}
