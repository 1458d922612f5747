// The API token: asked once, kept in sessionStorage (this tab only, gone when it closes), sent
// as the X-Api-Token header by api.js. A 401 from any call brings the prompt back with the
// API's message.
import { byId, showError } from './dom.js';

const KEY = 'detection-service-token';
const listeners = [];
let verify = async () => {};

export function getToken() {
  return sessionStorage.getItem(KEY) || '';
}

export function onTokenChange(listener) {
  listeners.push(listener);
}

function changed() {
  const status = byId('token-status');
  status.textContent = getToken() ? 'Token set' : 'No token';
  byId('token-forget').disabled = !getToken();
  for (const listener of listeners) listener(getToken());
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
  changed();
  askForToken();
}

// Opens the token dialog; `message` (the API's, after a 401) is shown in it.
export function askForToken(message = '') {
  const dialog = byId('token-dialog');
  showError(byId('token-error'), message ? { message } : null);
  if (!dialog.open) {
    byId('token-input').value = '';
    dialog.showModal();
  }
  byId('token-input').focus();
}

// `check(token)` resolves when the service takes the token and throws its error otherwise.
export function initToken(check) {
  verify = check;
  const dialog = byId('token-dialog');
  const input = byId('token-input');
  byId('token-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const candidate = input.value.trim();
    if (!candidate) {
      showError(byId('token-error'), { message: 'Type a token first.' });
      return;
    }
    byId('token-save').disabled = true;
    try {
      await verify(candidate);
      sessionStorage.setItem(KEY, candidate);
      showError(byId('token-error'), null);
      dialog.close();
      changed();
    } catch (error) {
      showError(byId('token-error'), error);
      input.select();
    } finally {
      byId('token-save').disabled = false;
    }
  });
  byId('token-cancel').addEventListener('click', () => dialog.close());
  byId('token-change').addEventListener('click', () => askForToken());
  byId('token-forget').addEventListener('click', forgetToken);
  byId('token-status').textContent = getToken() ? 'Token set' : 'No token';
  byId('token-forget').disabled = !getToken();
}
