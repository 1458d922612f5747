// Calls to the service's API, with the token header. A failed call throws an ApiError whose
// message is the API's own (`{"error": {"message"}}`); a 401 also brings the token prompt back.
import { askForToken, getToken } from './token.js';

export class ApiError extends Error {
  constructor(status, message, reason = '') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
  }
}

// '/v1/images', {label: ['dog', 'car'], min_score: 0.5} -> a same-origin URL.
export function apiUrl(path, query = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query)) {
    for (const item of [value].flat()) {
      if (item !== undefined && item !== null && item !== '') url.searchParams.append(name, item);
    }
  }
  return url;
}

// The API's error message from a failed response (or the HTTP status when it sent none).
export async function errorOf(status, statusText, bodyText) {
  let message = `${status} ${statusText || 'error'}`.trim();
  let reason = '';
  try {
    const body = JSON.parse(bodyText);
    if (body && body.error && typeof body.error.message === 'string') {
      message = body.error.message;
      reason = String(body.error.reason || '');
    }
  } catch {
    // Not JSON (a proxy's page): the status line it is.
  }
  return new ApiError(status, message, reason);
}

async function failed(response, { prompt }) {
  const error = await errorOf(response.status, response.statusText, await response.text());
  if (response.status === 401 && prompt) askForToken(error.message);
  return error;
}

// fetch with the token; `as`: 'json' (default), 'blob' or 'none'.
export async function api(path, { method = 'GET', query, body, as = 'json', signal, token } = {}) {
  const headers = { 'X-Api-Token': token ?? getToken(), Accept: as === 'blob' ? '*/*' : 'application/json' };
  let response;
  try {
    response = await fetch(apiUrl(path, query), { method, headers, body, signal, credentials: 'omit' });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'The service cannot be reached: is it running?');
  }
  if (!response.ok) throw await failed(response, { prompt: token === undefined });
  if (as === 'none' || response.status === 204) return null;
  return as === 'blob' ? response.blob() : response.json();
}

// A picture of the API as an object URL for <img src> (an <img> cannot send the header).
export async function pictureUrl(path, query, signal) {
  const blob = await api(path, { query, as: 'blob', signal });
  return URL.createObjectURL(blob);
}

// POST a form with upload progress (fetch has none): resolves {status, body} for any 2xx,
// rejects with an ApiError otherwise. `onProgress(fraction)` as the bytes go out.
export function postWithProgress(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open('POST', apiUrl(path));
    request.setRequestHeader('X-Api-Token', getToken());
    request.setRequestHeader('Accept', 'application/json');
    request.responseType = 'text';
    request.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener('load', async () => {
      if (request.status >= 200 && request.status < 300) {
        onProgress(1);
        resolve({ status: request.status, body: JSON.parse(request.responseText) });
        return;
      }
      const error = await errorOf(request.status, request.statusText, request.responseText);
      if (request.status === 401) askForToken(error.message);
      reject(error);
    });
    request.addEventListener('error', () => reject(new ApiError(0, 'The upload failed: the service cannot be reached.')));
    request.send(form);
  });
}

// GET /v1/models, asked once per token (the page's model pickers share it).
let modelsPromise = null;
export function loadModels() {
  if (modelsPromise === null) {
    modelsPromise = api('/v1/models').catch((error) => {
      modelsPromise = null;
      throw error;
    });
  }
  return modelsPromise;
}

export function forgetModels() {
  modelsPromise = null;
}
