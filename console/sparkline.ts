// A sparkline in SVG, drawn from numbers (never from markup): an area and a line over equally spaced points, scaled
// to the largest value (at least 1, so a quiet series lies flat on the floor). The picture is decorative; `label`
// says the same in words for screen readers and as the tooltip.
const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 120;
const HEIGHT = 28;
const PAD = 2;

function svgEl<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string>,
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

/** A WIDTH×HEIGHT sparkline of `values` (oldest first). */
export function sparkline(values: number[], label: string): SVGSVGElement {
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? (WIDTH - 2 * PAD) / (values.length - 1) : 0;
  const points = values.map((v, i) => {
    const x = PAD + i * step;
    const y = HEIGHT - PAD - (v / max) * (HEIGHT - 2 * PAD);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const floor = HEIGHT - PAD;
  const svg = svgEl('svg', {
    class: 'spark',
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    width: String(WIDTH),
    height: String(HEIGHT),
    role: 'img',
    'aria-label': label,
  });
  const title = svgEl('title', {});
  title.textContent = label;
  svg.append(
    title,
    svgEl('polygon', {
      class: 'spark-area',
      points: `${PAD},${floor} ${points.join(' ')} ${WIDTH - PAD},${floor}`,
    }),
    svgEl('polyline', { class: 'spark-line', points: points.join(' ') }),
  );
  return svg;
}
