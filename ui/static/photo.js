// One photo of the repository: the picture with its stored boxes, its details and EXIF
// (camera, taken at, GPS where the service's policy shows it), detect again with another
// model, download the original, delete it (after a confirmation).
import { api, loadModels, pictureUrl } from './api.js';
import { boxedPicture, detectionTable } from './boxes.js';
import { byId, fill, formatBytes, formatNumber, h, showError } from './dom.js';

const VIEW_SIDE = 1600;
let current = null; // {id, image, url, stage}

function fact(term, value) {
  if (value === null || value === undefined || value === '') return null;
  return [h('dt', {}, term), h('dd', {}, String(value))];
}

function exposureText(exposure) {
  const parts = [];
  if (exposure.iso) parts.push(`ISO ${exposure.iso}`);
  if (exposure.fNumber) parts.push(`f/${exposure.fNumber}`);
  if (exposure.exposureTime) {
    const time = exposure.exposureTime;
    parts.push(time < 1 ? `1/${Math.round(1 / time)} s` : `${time} s`);
  }
  if (exposure.focalLength) parts.push(`${exposure.focalLength} mm`);
  return parts.join(' · ');
}

function showFacts(image, run) {
  const camera = [image.camera.make, image.camera.model].filter(Boolean).join(' ');
  const gps = image.gps
    ? `${formatNumber(image.gps.latitude, 5)}, ${formatNumber(image.gps.longitude, 5)}` +
      (image.gps.altitude !== null && image.gps.altitude !== undefined ? ` (${Math.round(image.gps.altitude)} m)` : '')
    : null;
  fill(
    byId('photo-facts'),
    fact('File', image.originalName),
    fact('Uploaded', new Date(image.uploadedAt).toLocaleString()),
    fact('Size', `${image.width} × ${image.height} px, ${formatBytes(image.sizeBytes)}, ${image.mimeType}`),
    fact('Taken at', image.takenAt),
    fact('Camera', camera),
    fact('Lens', image.camera.lens),
    fact('Exposure', exposureText(image.exposure)),
    fact('GPS', gps),
    fact('EXIF', image.exifError ? `not read: ${image.exifError}` : null),
    fact('Detected by', run ? `${run.model}, ${new Date(run.createdAt).toLocaleString()}` : 'not detected'),
    fact('SHA-256', image.sha256),
  );
}

function showRun(run) {
  const found = run ? run.localizedObjectAnnotations : [];
  current.stage.show(found);
  fill(byId('photo-detections'), detectionTable(found, run ? `Stored detections (${run.model})` : 'Not detected yet'));
  showFacts(current.image, run);
}

async function fillModels() {
  const models = await loadModels();
  const picker = byId('photo-model');
  const previous = picker.value;
  fill(picker, models.models.map((model) =>
    h('option', { value: model.name }, model.default ? `${model.name} (default)` : model.name)));
  picker.value = models.models.some((model) => model.name === previous) ? previous : models.default;
}

function leave() {
  if (current && current.url) URL.revokeObjectURL(current.url);
  current = null;
}

export async function showPhoto(id) {
  leave();
  const mine = { id, image: null, url: null, stage: null };
  current = mine;
  const path = `/v1/images/${encodeURIComponent(id)}`;
  showError(byId('photo-error'), null);
  byId('photo-status').textContent = '';
  byId('photo-title').textContent = 'Photo';
  fill(byId('photo-stage'), h('p', { class: 'muted' }, 'Loading…'));
  fill(byId('photo-facts'));
  fill(byId('photo-detections'));
  try {
    const [details, runs, url] = await Promise.all([
      api(`${path}/details`),
      api(`${path}/detections`),
      pictureUrl(path, { max_side: VIEW_SIDE, format: 'jpeg' }),
      fillModels(),
    ]);
    if (current !== mine) {
      URL.revokeObjectURL(url);
      return;
    }
    mine.image = details.image;
    mine.url = url;
    const name = details.image.originalName || id;
    byId('photo-title').textContent = name;
    mine.stage = boxedPicture(url, `Photo ${name}`);
    fill(byId('photo-stage'), mine.stage.node);
    showRun(runs.runs[0] || null);
  } catch (error) {
    if (current !== mine) return;
    fill(byId('photo-stage'));
    showError(byId('photo-error'), error);
  }
}

async function redetect(event) {
  event.preventDefault();
  if (!current || !current.image) return;
  const mine = current;
  const form = new FormData();
  form.append('model', byId('photo-model').value);
  byId('photo-status').textContent = 'Detecting…';
  try {
    const runs = await api(`/v1/images/${encodeURIComponent(mine.id)}/detect`, { method: 'POST', body: form });
    if (current !== mine) return;
    const details = await api(`/v1/images/${encodeURIComponent(mine.id)}/details`);
    mine.image = details.image;
    showRun(runs.runs[0] || null);
    byId('photo-status').textContent = `Detected again with ${byId('photo-model').value}.`;
    showError(byId('photo-error'), null);
  } catch (error) {
    byId('photo-status').textContent = '';
    showError(byId('photo-error'), error);
  }
}

async function download() {
  if (!current || !current.image) return;
  try {
    const blob = await api(`/v1/images/${encodeURIComponent(current.id)}`, { as: 'blob' });
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: current.image.originalName || `${current.id}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showError(byId('photo-error'), error);
  }
}

function askToDelete() {
  if (!current || !current.image) return;
  const dialog = byId('confirm-dialog');
  byId('confirm-text').textContent =
    `“${current.image.originalName || current.id}” and its detections will be gone for good.`;
  dialog.returnValue = '';
  dialog.showModal();
  byId('confirm-no').focus();
}

async function confirmed() {
  const dialog = byId('confirm-dialog');
  if (dialog.returnValue !== 'confirm' || !current) return;
  const mine = current;
  try {
    await api(`/v1/images/${encodeURIComponent(mine.id)}`, { method: 'DELETE', as: 'none' });
    const name = mine.image.originalName || mine.id;
    leave();
    sessionStorage.setItem('detection-service-notice', `Deleted “${name}”.`);
    window.location.hash = '#/repository';
  } catch (error) {
    showError(byId('photo-error'), error);
  }
}

export function initPhoto() {
  byId('photo-redetect').addEventListener('submit', redetect);
  byId('photo-download').addEventListener('click', download);
  byId('photo-delete').addEventListener('click', askToDelete);
  byId('confirm-dialog').addEventListener('close', confirmed);
}

export function leavePhoto() {
  leave();
}
