// An inline SVG sparkline of one agent's last hour: credentials issued, API calls and
// denials per minute. Built with DOM calls (no markup strings), labelled for screen
// readers with the totals it draws.

const SVG = "http://www.w3.org/2000/svg";
const SERIES = ["calls", "issued", "denied"];

function node(tag, attrs) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
  return element;
}

function total(values) {
  return values.reduce((sum, v) => sum + v, 0);
}

export function sparkline(activity, width = 150, height = 34) {
  const peak = Math.max(1, ...SERIES.flatMap((name) => activity[name]));
  const count = activity.issued.length;
  const label =
    `Last hour: ${total(activity.issued)} credentials issued, ` +
    `${total(activity.calls)} API calls, ${total(activity.denied)} denied`;
  const svg = node("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  const title = node("title", {});
  title.textContent = label;
  svg.append(title, node("line", { class: "base", x1: 0, y1: height - 1, x2: width, y2: height - 1 }));
  for (const name of SERIES) {
    const values = activity[name];
    if (!total(values)) continue;
    const points = values.map((v, i) => {
      const x = (i / (count - 1)) * (width - 2) + 1;
      const y = height - 2 - (v / peak) * (height - 5);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    svg.append(node("polyline", { class: name, points: points.join(" ") }));
  }
  return svg;
}
