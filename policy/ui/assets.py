"""The page, its script and its style: plain HTML and vanilla JavaScript, no build step.

Everything from the datastore (names, labels, policy names) reaches the page only through
textContent and setAttribute, never as markup, so a name holding `<script>` shows as text."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Calyx: reachability and denied flows</title>
<link rel="stylesheet" href="/ui.css">
</head>
<body>
<header><h1>Calyx</h1><span id="status">connecting...</span></header>
<section>
<h2>Reachability <span id="what"></span></h2>
<p id="matrix-error" class="error" hidden></p>
<table id="matrix"></table>
<p id="legend"></p>
<p class="note">Rows: from, columns: to (hover a square for its pair). From etcd's policies, as
<code>policyctl reachability</code> computes it; <code>policyctl explain</code> says why.
Computed <span id="computed">never</span>.</p>
</section>
<section>
<h2>Denied flows <span id="flow-count"></span></h2>
<ul id="nodes"></ul>
<table id="flows">
<thead><tr><th>time (UTC)</th><th>node</th><th>protocol</th><th>from</th><th>to</th><th>denied by</th></tr></thead>
<tbody id="flow-rows"></tbody>
</table>
<p id="no-flows">No denied flows yet.</p>
</section>
<script src="/ui.js"></script>
</body>
</html>
"""

SCRIPT = r""""use strict";
const MARKS = {".": "allowed", "X": "denied", "~": "partly", "-": "self"};
const FLOW_ROWS = 200;  // rows kept on the page, newest first
let lastFlow = 0;
let shownFlows = 0;

function el(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  return node;
}

function utc(seconds) {
  return new Date(seconds * 1000).toISOString().slice(11, 23);
}

function renderMatrix(m) {
  const meaning = {};
  for (const item of m.legend || []) meaning[item.mark] = item.meaning;
  document.getElementById("what").textContent = m.what ? "(" + m.what + ")" : "";
  const error = document.getElementById("matrix-error");
  error.hidden = !m.error;
  error.textContent = m.error ? "cannot compute the matrix: " + m.error : "";
  const table = document.getElementById("matrix");
  const head = el("tr");
  head.appendChild(el("th", "from \\ to"));
  m.names.forEach((name, j) => head.appendChild(el("th", j + 1, {class: "column", title: name})));
  const thead = el("thead");
  thead.appendChild(head);
  const tbody = el("tbody");
  m.cells.forEach((row, i) => {
    const tr = el("tr");
    tr.appendChild(el("th", (i + 1) + " " + m.names[i], {class: "row"}));
    row.forEach((mark, j) => {
      const what = meaning[mark] || "unknown";
      tr.appendChild(el("td", mark, {
        class: "cell " + (MARKS[mark] || "unknown"),
        title: m.names[i] + " \u2192 " + m.names[j] + ": " + what,
      }));
    });
    tbody.appendChild(tr);
  });
  table.replaceChildren(thead, tbody);
  const legend = document.getElementById("legend");
  legend.replaceChildren(...(m.legend || []).map(item => {
    const span = el("span", null, {class: "key"});
    span.appendChild(el("span", item.mark, {class: "cell " + (MARKS[item.mark] || "unknown")}));
    span.appendChild(document.createTextNode(" " + item.meaning));
    return span;
  }));
  if (m.computed) document.getElementById("computed").textContent = utc(m.computed) + " UTC";
}

function end(address, port, name) {
  const at = address && address.includes(":") ? "[" + address + "]" : String(address);
  return (port === null || port === undefined ? at : at + ":" + port) + (name ? " (" + name + ")" : "");
}

function renderFlows(answer) {
  const rows = document.getElementById("flow-rows");
  for (const f of answer.flows) {
    const tr = el("tr", null, {class: "flow", "data-id": f.id});
    tr.appendChild(el("td", utc(f.time)));
    tr.appendChild(el("td", f.node));
    tr.appendChild(el("td", f.protocol));
    tr.appendChild(el("td", end(f.source, f.sourcePort, f.sourceEndpoint)));
    tr.appendChild(el("td", end(f.destination, f.destinationPort, f.destinationEndpoint)));
    tr.appendChild(el("td", f.decidedBy));
    rows.prepend(tr);
    shownFlows += 1;
  }
  while (rows.children.length > FLOW_ROWS) rows.lastElementChild.remove();
  if (answer.flows.length) lastFlow = answer.flows[answer.flows.length - 1].id;
  document.getElementById("no-flows").hidden = shownFlows > 0;
  document.getElementById("flow-count").textContent = shownFlows ? "(" + shownFlows + ")" : "";
  const nodes = document.getElementById("nodes");
  nodes.replaceChildren(...answer.nodes.map(n => el("li", n.node + (n.ok ? ": reading " + n.url : ": " + n.error),
    {class: n.ok ? "ok" : "failing"})));
}

async function getJson(path) {
  const answer = await fetch(path, {cache: "no-store"});
  if (!answer.ok) throw new Error(path + ": HTTP " + answer.status);
  return answer.json();
}

function repeat(work, every) {
  const status = document.getElementById("status");
  const again = () => work()
    .then(() => { status.textContent = "live"; status.className = "ok"; })
    .catch(error => { status.textContent = "calyx-ui unreachable: " + error.message; status.className = "failing"; })
    .finally(() => setTimeout(again, every));
  again();
}

repeat(() => getJson("/api/reachability").then(renderMatrix), 5000);
repeat(() => getJson("/api/flows?since=" + lastFlow).then(renderFlows), 1000);
"""

STYLE = """body { font-family: sans-serif; font-size: 14px; margin: 1em 2em; color: #222; }
header { display: flex; align-items: baseline; gap: 1em; }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 16px; margin: 1.2em 0 0.4em; }
h2 span { font-weight: normal; color: #555; }
.note { color: #555; font-size: 12px; }
.error, .failing { color: #c8322d; }
.ok { color: #2e9e4f; }
#matrix { border-collapse: separate; border-spacing: 2px; }
#matrix th.row { text-align: left; font-weight: normal; padding-right: 0.6em; white-space: nowrap; }
#matrix th.column { font-weight: normal; width: 22px; }
.cell { display: inline-block; width: 22px; height: 22px; line-height: 22px; text-align: center; color: white; }
td.cell { display: table-cell; padding: 0; }
.allowed { background: #2e9e4f; }
.denied { background: #c8322d; }
.partly { background: #e0a21b; }
.self { background: #b0b0b0; }
.unknown { background: #444; }
.key { margin-right: 1.5em; }
#flows { border-collapse: collapse; }
#flows th, #flows td { text-align: left; padding: 2px 10px 2px 0; border-bottom: 1px solid #ddd; }
#flows td { font-family: monospace; }
#nodes { margin: 0 0 0.5em; padding-left: 1.2em; font-size: 12px; }
"""
