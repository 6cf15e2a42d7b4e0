// The page of fairseq-wae-explore: each button posts its section's fields to api/<route> and shows the
// answer, or the server's message for a refused request. A section's data-state is "busy" while its
// request runs, then "done" or "error" (what the tests and the benchmark wait for). The URLs are
// relative: the page works behind a proxy's path prefix.
"use strict";

const $ = (id) => document.getElementById(id);

// The server's id (X-Explore-Server), to see that a page left open is now talking to a restarted server.
let serverId = null;
let unknownSymbol = "<unk>";
let mapId = null;  // the map drawn, for the interpolation's path on it

function serverStatus(text) {
  $("server-status").textContent = text;
  $("server-status").classList.toggle("hidden", !text);
}

async function call(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    serverStatus("the server does not answer");
    throw new Error("the server does not answer: is fairseq-wae-explore still running? Start it again; " +
                    "the next request tries again");
  }
  const id = response.headers.get("X-Explore-Server");
  if (id && serverId && id !== serverId) {
    serverStatus("the server was restarted: this page now uses the new one (draw the map again)");
    mapId = null;
    serverId = id;
    showCard();
  } else if (id) {
    if (serverId === null || $("server-status").textContent === "the server does not answer") serverStatus("");
    serverId = id;
  }
  return response;
}

async function post(route, body) {
  const response = await call("api/" + route, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  let answer;
  try { answer = await response.json(); } catch (e) { answer = {error: "the server answered " + response.status}; }
  if (!response.ok) throw new Error(answer.error || ("the server answered " + response.status));
  return answer;
}

// `text` in `element`, each unknown-word symbol in it marked
function withUnknownMarked(element, text) {
  const parts = text.split(unknownSymbol);
  element.replaceChildren();
  parts.forEach((part, i) => {
    if (i > 0) {
      const mark = document.createElement("mark");
      mark.className = "unk";
      mark.textContent = unknownSymbol;
      element.appendChild(mark);
    }
    element.appendChild(document.createTextNode(part));
  });
}

// The words of the inputs that the model's dictionary does not hold (each read as <unk>), marked.
function showUnknown(elementId, labels, unknown) {
  const element = $(elementId);
  element.replaceChildren();
  unknown.forEach((words, i) => {
    if (!words.length) return;
    const line = document.createElement("div");
    line.append(`${labels[i]}: unknown to the model (read as ${unknownSymbol}): `);
    words.forEach((word) => {
      const mark = document.createElement("mark");
      mark.className = "unk";
      mark.textContent = word;
      line.append(mark, " ");
    });
    element.appendChild(line);
  });
}

function search() {
  return {decoding: $("decoding").value, beam: $("beam").value, topk: $("topk").value, topp: $("topp").value,
          temperature: $("temperature").value, sampling_seed: $("search-seed").value, max_len: $("max-len").value};
}

// Runs `work` for the section holding `errorId`: its error cleared first, shown if `work` throws.
async function run(sectionId, errorId, work) {
  const section = $(sectionId);
  section.dataset.state = "busy";
  $(errorId).textContent = "";
  try {
    await work();
    section.dataset.state = "done";
  } catch (e) {
    $(errorId).textContent = e.message;
    section.dataset.state = "error";
  }
}

function fillList(list, lines, mark) {
  list.replaceChildren(...lines.map((line, i) => {
    const item = document.createElement("li");
    withUnknownMarked(item, line);
    if (mark && i > 0 && line !== lines[i - 1]) item.classList.add("changed");
    return item;
  }));
}

function reconstruct() {
  return run("reconstruct", "rec-error", async () => {
    $("rec-output").replaceChildren();
    $("rec-unknown").replaceChildren();
    const answer = await post("reconstruct", {...search(), sentences: $("rec-input").value});
    fillList($("rec-output"), answer.reconstructions);
    showUnknown("rec-unknown", answer.sentences.map((_, i) => `line ${i + 1}`), answer.unknown);
  });
}

function interpolate() {
  return run("interpolate", "int-error", async () => {
    $("int-output").replaceChildren();
    $("int-unknown").replaceChildren();
    const answer = await post("interpolate", {...search(), start: $("int-start").value, end: $("int-end").value,
                                              steps: $("int-steps").value, method: $("int-method").value,
                                              map: mapId});
    fillList($("int-output"), answer.path, true);  // a step whose sentence changed is highlighted
    showUnknown("int-unknown", ["start", "end"], answer.unknown);
    await drawPath(answer);
  });
}

function sample() {
  return run("sample", "sam-error", async () => {
    $("sam-output").replaceChildren();
    $("sam-download").classList.add("hidden");
    $("sam-prior-used").textContent = "";
    const answer = await post("sample", {...search(), n: $("sam-n").value, seed: $("sam-seed").value,
                                         latent_temperature: $("sam-temp").value,
                                         prior_kind: $("sam-prior-kind").value || "normal"});
    fillList($("sam-output"), answer.samples);
    $("sam-prior-used").textContent = `sampled from ${answer.prior_name}`;
    const link = $("sam-download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([answer.samples.join("\n") + "\n"], {type: "text/plain"}));
    link.download = `samples-${answer.prior_kind}-n${answer.n}-seed${answer.seed}-T${answer.latent_temperature}.txt`;
    link.classList.remove("hidden");
  });
}

function neighbours() {
  return run("neighbours", "nn-error", async () => {
    $("nn-output").replaceChildren();
    $("nn-unknown").replaceChildren();
    const answer = await post("neighbours", {sentence: $("nn-input").value, k: $("nn-k").value});
    showUnknown("nn-unknown", ["sentence"], answer.unknown);
    $("nn-output").replaceChildren(...answer.neighbours.map(([sentence, distance]) => {
      const row = document.createElement("tr");
      for (const cell of [sentence, distance.toFixed(4)]) {
        const td = document.createElement("td");
        td.textContent = cell;
        row.appendChild(td);
      }
      return row;
    }));
  });
}

// The map: corpus codes and prior samples in 2-D, the sentence on hover, its reconstruction on click.
// data-fetch-ms and data-render-ms: the server's answer, and the drawing until the next frame.
function drawMap() {
  return run("map-section", "map-error", async () => {
    const started = performance.now();
    $("map-status").textContent = "drawing...";
    const answer = await post("map", {size: $("map-size").value, prior: $("map-prior").value,
                                      seed: $("map-seed").value, latent_temperature: $("map-temp").value,
                                      method: $("map-method").value, max_len: $("max-len").value,
                                      prior_kind: $("map-prior-kind").value || "normal"});
    const fetched = performance.now();
    mapId = answer.id;
    const trace = (points, name, color, size, opacity) => ({
      x: points.x, y: points.y, hovertext: points.text, hoverinfo: "text", name: name, type: "scatter",
      mode: "markers", marker: {size: size, color: color, opacity: opacity},
    });
    await Plotly.react("map", [trace(answer.corpus, "corpus", "#3b6ea5", 3, 0.5),
                               trace(answer.prior, `prior samples (${answer.prior_kind})`, "#e4572e", 5, 0.9)], {
      margin: {l: 50, r: 10, t: 10, b: 40}, hovermode: "closest", legend: {orientation: "h"},
      xaxis: {title: {text: answer.axes[0]}}, yaxis: {title: {text: answer.axes[1]}},
    }, {displaylogo: false, responsive: true});
    await new Promise((resolve) => requestAnimationFrame(() => resolve()));
    const drawn = performance.now();
    const status = $("map-status");
    status.dataset.points = String(answer.corpus.x.length + answer.prior.x.length);
    status.dataset.fetchMs = (fetched - started).toFixed(0);
    status.dataset.renderMs = (drawn - fetched).toFixed(0);
    status.textContent = `${answer.corpus.x.length} corpus codes, ${answer.prior.x.length} prior samples from ` +
                         `${answer.prior_name} (${answer.method}; ${((drawn - started) / 1000).toFixed(2)} s)`;
    if (!$("map").dataset.clicks) {
      $("map").dataset.clicks = "on";
      $("map").on("plotly_click", (event) => reconstructPoint(event.points[0].hovertext));
    }
  });
}

// The interpolation's path on the map drawn (its codes placed by the map's projection), as a third trace.
async function drawPath(answer) {
  const map = $("map");
  if (!map.data) return;
  if (map.data.length > 2) await Plotly.deleteTraces("map", 2);
  if (!answer.map) {
    if (mapId) $("map-status").textContent = "the interpolation is not on the map: draw the map again";
    return;
  }
  await Plotly.addTraces("map", {
    x: answer.map.x, y: answer.map.y, hovertext: answer.path, hoverinfo: "text", name: "interpolation",
    type: "scatter", mode: "lines+markers", line: {color: "#2a9d3f", width: 2}, marker: {size: 7, color: "#2a9d3f"},
  });
}

function reconstructPoint(sentence) {
  return run("map-section", "map-error", async () => {
    const answer = await post("reconstruct", {...search(), sentences: sentence});
    $("map-click").replaceChildren();
    for (const [label, text] of [["sentence", sentence], ["reconstruction", answer.reconstructions[0]]]) {
      const line = document.createElement("div");
      line.textContent = `${label}: ${text}`;
      $("map-click").appendChild(line);
    }
  });
}

async function showCard() {
  const response = await call("api/card");
  const card = await response.json();
  if (!response.ok) {
    serverStatus(card.error || ("the server answered " + response.status));
    return;
  }
  unknownSymbol = card.unknown_symbol || unknownSymbol;
  $("card-title").textContent = card.title || "";
  $("card-summary").replaceChildren(...(card.summary || []).map(([key, value]) => {
    const row = document.createElement("tr");
    row.innerHTML = "<th></th><td></td>";
    row.children[0].textContent = key;
    row.children[1].textContent = value;
    return row;
  }));
  $("card-text").textContent = card.card || "(a checkpoint, not an export: no model card; fairseq-wae-export writes one)";
  $("map-size").value = Math.min(card.corpus_sentences, card.limits.map);
  $("max-len").value = card.limits.default_max_len;
  $("max-len").max = card.limits.max_len;
  const most = Math.floor(card.limits.decoding / card.limits.default_max_len) - card.limits.step_cost;
  $("map-prior").value = Math.max(0, Math.min(50, most));
  $("budget").textContent = `one request decodes at most ${card.limits.decoding.toLocaleString("en")} steps: ` +
                            `(sentences x beam + ${card.limits.step_cost}) x longest sentence, about 2 s of a ` +
                            `paper-size model (${most} sentences of ${card.limits.default_max_len} tokens)`;
  $("map-method").replaceChildren(...card.projection_methods.map((method) => {
    const option = document.createElement("option");
    option.value = option.textContent = method;
    return option;
  }));
  // the choice of prior, only for a model that carries a fitted one besides N(0, I)
  const priors = Object.entries(card.priors || {});
  for (const id of ["sam-prior-kind", "map-prior-kind"]) {
    $(id).replaceChildren(...priors.map(([kind, name]) => {
      const option = document.createElement("option");
      option.value = kind;
      option.textContent = kind === "normal" ? "N(0, I)" : "fitted";
      option.title = name;
      return option;
    }));
  }
  document.querySelectorAll(".prior-choice").forEach((label) => label.classList.toggle("hidden", priors.length < 2));
  if (!card.corpus_sentences) $("nn-error").textContent = "no corpus: start fairseq-wae-explore with --corpus FILE";
  document.body.dataset.ready = "yes";
}

$("rec-button").addEventListener("click", reconstruct);
$("int-button").addEventListener("click", interpolate);
$("sam-button").addEventListener("click", sample);
$("nn-button").addEventListener("click", neighbours);
$("map-button").addEventListener("click", drawMap);
showCard();
