// Boxes over a photo and the table of the same detections. Boxes are positioned in per cent of
// the picture (from normalizedVertices), so they follow it at any size; the colour is the
// class's, the same in the table.
import { fill, formatNumber, h } from './dom.js';

// Twenty distinct colours, each dark enough for white label text; a class keeps its colour.
const PALETTE = [
  '#d62728', '#2ca02c', '#1f5fbf', '#e6550d', '#9467bd', '#8c564b', '#c2185b', '#5f6b00',
  '#00838f', '#7b1fa2', '#b8860b', '#1b5e20', '#303f9f', '#a0522d', '#ad1457', '#00695c',
  '#6d4c41', '#d84315', '#455a64', '#512da8',
];

export function colourOf(classId) {
  return PALETTE[Math.abs(Number(classId)) % PALETTE.length];
}

function corners(annotation) {
  const [topLeft, , bottomRight] = annotation.boundingPoly.normalizedVertices;
  return { x1: topLeft.x, y1: topLeft.y, x2: bottomRight.x, y2: bottomRight.y };
}

// A picture with a layer of boxes; `stage.show(annotations)` replaces them.
export function boxedPicture(src, alt) {
  const layer = h('div', { class: 'boxes', 'aria-hidden': 'true' });
  const picture = h('img', { src, alt, class: 'picture', decoding: 'async' });
  const node = h('div', { class: 'stage' }, picture, layer);
  const show = (annotations) => {
    // The best last, so that its label is on top where boxes overlap.
    const ordered = [...annotations].sort((a, b) => a.score - b.score);
    fill(
      layer,
      ordered.map((annotation) => {
        const { x1, y1, x2, y2 } = corners(annotation);
        const colour = colourOf(annotation.classId);
        return h(
          'div',
          {
            class: ['box', x1 > 0.7 ? 'at-right' : '', y1 < 0.04 ? 'at-top' : ''].join(' ').trim(),
            dataset: { label: annotation.name },
            style: {
              left: `${x1 * 100}%`,
              top: `${y1 * 100}%`,
              width: `${(x2 - x1) * 100}%`,
              height: `${(y2 - y1) * 100}%`,
              borderColor: colour,
            },
          },
          h('span', { class: 'box-label', style: { backgroundColor: colour } },
            `${annotation.name} ${formatNumber(annotation.score)}`),
        );
      }),
    );
  };
  return { node, picture, show };
}

// The detections as a table: class (with its colour), score, box corners in pixels.
export function detectionTable(annotations, caption) {
  const rows = annotations.map((annotation) => {
    const [topLeft, , bottomRight] = annotation.boundingPoly.vertices;
    return h(
      'tr',
      { dataset: { label: annotation.name } },
      h('td', {}, h('span', { class: 'swatch', style: { backgroundColor: colourOf(annotation.classId) } }), annotation.name),
      h('td', { class: 'number' }, formatNumber(annotation.score)),
      h('td', { class: 'number' }, `${topLeft.x}, ${topLeft.y} – ${bottomRight.x}, ${bottomRight.y}`),
    );
  });
  if (rows.length === 0) {
    rows.push(h('tr', { class: 'none' }, h('td', { colspan: 3 }, 'No object found with these settings.')));
  }
  return h(
    'table',
    { class: 'detections' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Class'), h('th', { scope: 'col' }, 'Score'),
      h('th', { scope: 'col' }, 'Box (px)'))),
    h('tbody', {}, rows),
  );
}
