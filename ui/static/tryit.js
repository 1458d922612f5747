// The "Try it" screen: photos from this computer (picked, dropped or pasted), each sent to
// POST /v1/detect with the settings of the form, and shown with its boxes, the table of its
// detections and the per-stage timings. Any change of a setting detects them all again.
import { api, loadModels } from './api.js';
import { boxedPicture, detectionTable } from './boxes.js';
import { byId, debounce, fill, formatNumber, h, showError } from './dom.js';

const SLIDERS = ['score_th', 'nms_iou', 'min_height', 'min_width', 'maxResults'];
const items = [];
let nextId = 1;
let models = { default: '', models: [] };
const chosenClasses = [];
let defaultsApplied = false;

function modelInfo(name) {
  return models.models.find((model) => model.name === name) || models.models[0];
}

function showValue(name) {
  const input = byId(name);
  byId(`${name}-value`).textContent = name === 'maxResults' ? input.value : formatNumber(input.value);
}

function settings() {
  const values = Object.fromEntries(SLIDERS.map((name) => [name, byId(name).value]));
  return { ...values, model: byId('try-model').value, classes: [...chosenClasses] };
}

function setDefaults() {
  const info = modelInfo(byId('try-model').value);
  if (!info) return;
  for (const name of SLIDERS) {
    if (info.defaults[name] !== undefined) byId(name).value = String(info.defaults[name]);
    showValue(name);
  }
}

// --- the classes picker

function renderClasses() {
  const info = modelInfo(byId('try-model').value);
  const names = info ? info.classNames : [];
  fill(
    byId('try-class-add'),
    h('option', { value: '' }, 'Add a class…'),
    names.filter((name) => !chosenClasses.includes(name)).map((name) => h('option', { value: name }, name)),
  );
  fill(
    byId('try-classes'),
    chosenClasses.map((name) =>
      h('li', { class: 'chip' }, name,
        h('button', {
          type: 'button',
          class: 'chip-remove',
          'aria-label': `Remove the class ${name}`,
          onclick: () => {
            chosenClasses.splice(chosenClasses.indexOf(name), 1);
            renderClasses();
            byId('try-class-add').focus();
            changed();
          },
        }, '×'))),
  );
  byId('try-classes-none').hidden = chosenClasses.length > 0;
}

// --- one photo

function addFiles(files) {
  for (const file of files) {
    if (!file.type.startsWith('image/')) continue;
    const item = { id: nextId++, file, url: URL.createObjectURL(file), controller: null };
    item.stage = boxedPicture(item.url, `Photo ${file.name}`);
    item.status = h('p', { class: 'muted result-status' }, 'Detecting…');
    item.error = h('p', { class: 'error', role: 'alert', hidden: true });
    item.table = h('div', { class: 'table-holder' });
    item.timings = h('dl', { class: 'timings' });
    item.node = h(
      'article',
      { class: 'panel result', dataset: { file: file.name } },
      h('header', { class: 'result-head' },
        h('h3', {}, file.name),
        h('button', { type: 'button', onclick: () => removeItem(item), 'aria-label': `Remove ${file.name}` }, 'Remove')),
      item.status,
      item.error,
      h('div', { class: 'result-body' }, item.stage.node, h('div', { class: 'result-side' }, item.table, item.timings)),
    );
    items.push(item);
    byId('try-results').append(item.node);
    detect(item);
  }
  refreshEmpty();
}

function removeItem(item) {
  if (item.controller) item.controller.abort();
  URL.revokeObjectURL(item.url);
  item.node.remove();
  items.splice(items.indexOf(item), 1);
  refreshEmpty();
  updateCopy();
}

function refreshEmpty() {
  byId('try-empty').hidden = items.length > 0;
  byId('try-clear').disabled = items.length === 0;
}

async function detect(item) {
  if (item.controller) item.controller.abort();
  const controller = new AbortController();
  item.controller = controller;
  const current = settings();
  const form = new FormData();
  form.append('image', item.file, item.file.name);
  for (const name of SLIDERS) form.append(name, current[name]);
  if (current.model) form.append('model', current.model);
  if (current.classes.length) form.append('classes', current.classes.join(','));
  item.status.textContent = 'Detecting…';
  item.node.setAttribute('aria-busy', 'true');
  try {
    const answer = await api('/v1/detect', { method: 'POST', body: form, signal: controller.signal });
    const result = answer.responses[0];
    if (result.error) throw new Error(result.error.message);
    showError(item.error, null);
    show(item, result);
  } catch (error) {
    if (error.name === 'AbortError') return;
    item.status.textContent = 'Not detected.';
    showError(item.error, error);
    item.stage.show([]);
    fill(item.table);
    fill(item.timings);
  } finally {
    if (item.controller === controller) {
      item.controller = null;
      item.node.removeAttribute('aria-busy');
    }
  }
}

function show(item, result) {
  const found = result.localizedObjectAnnotations;
  const size = result.imageSize;
  item.status.textContent =
    `${found.length} ${found.length === 1 ? 'object' : 'objects'} · ${result.model} · ${size.width}×${size.height}`;
  item.stage.show(found);
  fill(item.table, detectionTable(found, `Detections in ${item.file.name}`));
  const timings = Object.entries(result.timingsMs || {});
  const total = timings.reduce((sum, [, ms]) => sum + ms, 0);
  fill(
    item.timings,
    [...timings, ['total', total]].map(([stage, ms]) => [h('dt', {}, stage), h('dd', {}, `${formatNumber(ms, 1)} ms`)]),
  );
}

// --- the request as curl and as a send2api call

function shellQuote(text) {
  return `'${String(text).replaceAll("'", "'\\''")}'`;
}

function requestTexts() {
  const current = settings();
  const base = window.location.origin;
  const names = items.length ? items.map((item) => item.file.name) : ['photo.jpg'];
  const info = modelInfo(current.model);
  const otherModel = info && !info.default;
  const curl = [
    `curl -fsS ${shellQuote(`${base}/v1/detect`)} -H "X-Api-Token: $API_TOKEN"`,
    ...names.map((name) => `-F ${shellQuote(`image=@${name}`)}`),
    ...SLIDERS.map((name) => `-F ${name}=${current[name]}`),
    ...(otherModel ? [`-F model=${shellQuote(current.model)}`] : []),
    ...(current.classes.length ? [`-F ${shellQuote(`classes=${current.classes.join(',')}`)}`] : []),
  ].join(' \\\n  ');
  const fields = {};
  if (otherModel) fields.model = current.model;
  if (current.classes.length) fields.classes = current.classes.join(',');
  const call = Object.keys(fields).length ? 'send_multipart' : 'send2api';
  const args = [
    `score_th=${Number(current.score_th)}`,
    `nms_iou=${Number(current.nms_iou)}`,
    `min_height=${Number(current.min_height)}`,
    `min_width=${Number(current.min_width)}`,
    `max_results=${Number(current.maxResults)}`,
  ];
  if (call === 'send_multipart') args.push(`fields=${JSON.stringify(fields)}`);
  const python = [
    'import os',
    '',
    `from client.send2api import ${call}`,
    '',
    `result = ${call}(`,
    `    ${JSON.stringify(`${base}/`)},`,
    '    os.environ["API_TOKEN"],',
    `    [${names.map((name) => JSON.stringify(name)).join(', ')}],`,
    ...args.map((arg) => `    ${arg},`),
    ')',
  ].join('\n');
  return { curl, python };
}

let shown = 'curl';
function updateCopy() {
  byId('copy-text').textContent = requestTexts()[shown];
}

async function copy(kind) {
  shown = kind;
  updateCopy();
  const text = byId('copy-text').textContent;
  try {
    await navigator.clipboard.writeText(text);
    byId('copy-status').textContent = kind === 'curl' ? 'Copied the curl command.' : 'Copied the Python call.';
  } catch {
    // No clipboard (a page not served over https or from this machine): select it instead.
    const range = document.createRange();
    range.selectNodeContents(byId('copy-text'));
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    byId('copy-status').textContent = 'Selected: copy it with Ctrl+C.';
  }
}

// --- the screen

const detectAll = debounce(() => items.forEach(detect), 250);

function changed() {
  updateCopy();
  detectAll();
}

async function loadModelPicker() {
  models = await loadModels();
  const picker = byId('try-model');
  const previous = picker.value;
  fill(picker, models.models.map((model) =>
    h('option', { value: model.name }, model.default ? `${model.name} (default)` : model.name)));
  picker.value = models.models.some((model) => model.name === previous) ? previous : models.default;
  if (!defaultsApplied) {
    // The sliders start at the default model's own defaults.
    setDefaults();
    defaultsApplied = true;
  }
  renderClasses();
  updateCopy();
}

export function initTry() {
  for (const name of SLIDERS) {
    byId(name).addEventListener('input', () => {
      showValue(name);
      changed();
    });
    showValue(name);
  }
  byId('try-files').addEventListener('change', (event) => {
    addFiles([...event.target.files]);
    event.target.value = '';
    updateCopy();
  });
  const drop = byId('try-drop');
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    addFiles([...event.dataTransfer.files]);
    updateCopy();
  });
  document.addEventListener('paste', (event) => {
    if (byId('screen-try').hidden || !event.clipboardData) return;
    const files = [...event.clipboardData.files];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
      updateCopy();
    }
  });
  byId('try-clear').addEventListener('click', () => [...items].forEach(removeItem));
  byId('try-model').addEventListener('change', () => {
    const info = modelInfo(byId('try-model').value);
    const keep = chosenClasses.filter((name) => info.classNames.includes(name));
    chosenClasses.splice(0, chosenClasses.length, ...keep);
    renderClasses();
    changed();
  });
  byId('try-class-add').addEventListener('change', (event) => {
    const name = event.target.value;
    if (name && !chosenClasses.includes(name)) chosenClasses.push(name);
    renderClasses();
    changed();
  });
  byId('try-defaults').addEventListener('click', () => {
    setDefaults();
    changed();
  });
  byId('try-settings').addEventListener('submit', (event) => event.preventDefault());
  byId('copy-curl').addEventListener('click', () => copy('curl'));
  byId('copy-python').addEventListener('click', () => copy('python'));
  refreshEmpty();
}

// Shown (again): the models are read with the current token.
export async function showTry() {
  try {
    await loadModelPicker();
    showError(byId('try-error'), null);
  } catch (error) {
    showError(byId('try-error'), error);
  }
}
