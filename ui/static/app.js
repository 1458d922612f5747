// The page's entry: the screens behind #/try, #/repository and #/photo/<id>, and the token.
import { api, forgetModels } from './api.js';
import { byId } from './dom.js';
import { initPhoto, leavePhoto, showPhoto } from './photo.js';
import { initRepository, showRepository } from './repository.js';
import { askForToken, getToken, initToken, onTokenChange } from './token.js';
import { initTry, showTry } from './tryit.js';

const SCREENS = ['try', 'repository', 'photo'];

function route() {
  const [, screen = 'try', id = ''] = window.location.hash.split('/');
  if (screen === 'photo' && id) return { screen, id: decodeURIComponent(id) };
  return { screen: SCREENS.includes(screen) && screen !== 'photo' ? screen : 'try', id: '' };
}

function show() {
  const { screen, id } = route();
  for (const name of SCREENS) byId(`screen-${name}`).hidden = name !== screen;
  for (const link of document.querySelectorAll('nav a[data-screen]')) {
    const here = link.dataset.screen === screen || (screen === 'photo' && link.dataset.screen === 'repository');
    if (here) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (screen !== 'photo') leavePhoto();
  if (!getToken()) {
    askForToken();
    return;
  }
  if (screen === 'try') showTry();
  else if (screen === 'repository') showRepository();
  else showPhoto(id);
}

function start() {
  initToken((token) => api('/v1/models', { token }));
  initTry();
  initRepository();
  initPhoto();
  onTokenChange(() => {
    forgetModels();
    show();
  });
  window.addEventListener('hashchange', () => {
    show();
    byId('main').focus({ preventScroll: true });
  });
  show();
}

start();
