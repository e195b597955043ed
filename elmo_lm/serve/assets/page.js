// The exploration page: plain JavaScript and SVG, no library, no network beyond this service.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];

function element(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function call(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

function showNeighbours(result) {
  const body = document.querySelector("#neighbours tbody");
  body.replaceChildren();
  for (const layer of result.layers) {
    layer.neighbours.forEach((n, rank) => {
      const row = document.createElement("tr");
      row.dataset.layer = layer.layer;
      for (const [value, cls] of [[layer.layer, "layer"], [rank + 1, "rank"], [n.score.toFixed(3), "score"],
                                  [n.context, "context"], [n.label || "", "label"]]) {
        const cell = document.createElement("td");
        cell.className = cls;
        cell.textContent = value;
        row.appendChild(cell);
      }
      body.appendChild(row);
    });
  }
}

function drawPlot(projection) {
  const svg = document.getElementById("plot");
  svg.replaceChildren();
  const width = 560, height = 400, margin = 30;
  const all = projection.points.concat(projection.query ? [projection.query] : []);
  const xs = all.map(p => p.x), ys = all.map(p => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = x => margin + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (width - 2 * margin);
  const sy = y => height - margin - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (height - 2 * margin);
  const labels = [...new Set(projection.points.map(p => p.label || ""))];
  const colour = label => PALETTE[labels.indexOf(label || "") % PALETTE.length];
  svg.appendChild(element("text", {x: margin, y: 18, "font-size": 12},
    `"${projection.word}", layer ${projection.layer}: PC1 ${(100 * projection.explained[0]).toFixed(0)}%, ` +
    `PC2 ${(100 * (projection.explained[1] || 0)).toFixed(0)}% of the variance`));
  for (const p of projection.points) {
    const dot = element("circle", {cx: sx(p.x), cy: sy(p.y), r: 5, fill: colour(p.label), class: "point",
                                   "data-label": p.label || ""});
    dot.appendChild(element("title", {}, (p.label ? `[${p.label}] ` : "") + p.context));
    svg.appendChild(dot);
  }
  if (projection.query) {
    const q = element("rect", {x: sx(projection.query.x) - 6, y: sy(projection.query.y) - 6, width: 12, height: 12,
                               fill: "none", stroke: "#000", "stroke-width": 2, class: "query"});
    q.appendChild(element("title", {}, "your sentence"));
    svg.appendChild(q);
  }
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  for (const label of labels.filter(l => l)) {
    const item = document.createElement("span");
    item.className = "legend-item";
    item.innerHTML = `<span class="swatch" style="background:${colour(label)}"></span>`;
    item.appendChild(document.createTextNode(label));
    legend.appendChild(item);
  }
}

function drawHead(info) {
  const svg = document.getElementById("head"), note = document.getElementById("head-note");
  svg.replaceChildren();
  if (!info.head || !info.head.layer_weights) {
    svg.style.display = "none";
    note.textContent = info.head ? "This head does not mix the layers." : "No task head given (elmo serve --head DIR).";
    return;
  }
  const weights = info.head.layer_weights, bar = 60, gap = 40;
  weights.forEach((w, j) => {
    const h = 110 * w, x = 40 + j * (bar + gap);
    svg.appendChild(element("rect", {x, y: 130 - h, width: bar, height: h, fill: PALETTE[j % PALETTE.length],
                                     class: "weight", "data-weight": w}));
    svg.appendChild(element("text", {x, y: 148, "font-size": 12}, `layer ${j}: ${w.toFixed(3)}`));
  });
  note.textContent = `${info.head.task} head (${info.head.labels.length} labels), gamma ` +
                     `${info.head.gamma === null ? "-" : info.head.gamma.toFixed(3)}: softmax-normalised layer weights.`;
}

async function lookUp(event) {
  event.preventDefault();
  const status = document.getElementById("status");
  status.className = "";
  status.textContent = "looking up...";
  const sentence = document.getElementById("sentence").value, word = document.getElementById("word").value;
  try {
    const result = await call("/api/neighbors", {sentence, word, k: Number(document.getElementById("k").value),
                                                 same_word: document.getElementById("same-word").checked});
    showNeighbours(result);
    const layer = Number(document.getElementById("layer").value);
    drawPlot(await call("/api/projection", {word, layer, sentence}));
    status.textContent = `done: "${word}" is token ${result.position + 1} of ${result.tokens.length}`;
  } catch (error) {
    status.className = "error";
    status.textContent = error.message;
  }
}

async function start() {
  const info = await call("/api/head");
  const select = document.getElementById("layer");
  for (let j = 0; j < info.layers; j++) select.appendChild(new Option(`layer ${j}`, j, false, j === info.layers - 1));
  drawHead(info);
  document.getElementById("query").addEventListener("submit", lookUp);
  document.body.dataset.ready = "yes";
}

start();
