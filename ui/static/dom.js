// Elements made from data, never from HTML text: every value becomes a property, an attribute
// or a text node, so a file name, a label or an EXIF field can never turn into markup. No
// module of the UI parses a string as HTML (tests/test_ui.py checks the sources).

// h('a', {href: '#/x', class: 'card'}, 'text', child, [more]) -> the element.
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') {
      node.className = value;
    } else if (key === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (key === 'style') {
      // CSSOM properties, which the Content-Security-Policy allows (a style attribute it
      // would refuse).
      Object.assign(node.style, value);
    } else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key in PROPERTIES) {
      node[PROPERTIES[key]] = value;
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

// Set as properties: their values are data, not markup.
const PROPERTIES = { text: 'textContent', value: 'value', checked: 'checked', download: 'download' };

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replace everything inside `node` by `children`.
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export function byId(id) {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`the page has no #${id}`);
  return node;
}

// A message in an error paragraph (hidden when there is none).
export function showError(node, error) {
  if (!error) {
    node.hidden = true;
    node.textContent = '';
    return;
  }
  node.textContent = error.message || String(error);
  node.hidden = false;
}

export function formatNumber(value, digits = 2) {
  return Number(value).toFixed(digits);
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

// Runs `fn` once the calls have stopped for `ms` milliseconds.
export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
