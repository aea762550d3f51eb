// vaezoo explore: one column per run; every picture comes from the JSON/PNG API beside this file.
"use strict";

const DEFAULT_CURVES = ["train loss", "train neg_elbo", "test neg_elbo"];
const COLOURS = ["#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const SAMPLES = 16;
const RECONSTRUCTIONS = 8;

const $ = (id) => document.getElementById(id);
const views = [];

function say(message) { $("status").textContent = message; }

async function errorOf(response) {
  try { return (await response.json()).error; } catch { return `${response.status} ${response.statusText}`; }
}

// Load a PNG from the API into `img`; an error response is shown in the run's column instead.
async function show(view, img, url) {
  let response;
  try { response = await fetch(url); } catch (err) {
    view.error(`no answer from the server (${err.message}); is vaezoo explore still running?`);
    return false;
  }
  if (!response.ok) {
    view.error(await errorOf(response));
    return false;
  }
  const blob = await response.blob();
  const old = img.src;
  img.src = URL.createObjectURL(blob);
  await img.decode().catch(() => {});
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  view.error("");
  return true;
}

function testIndex(input, run) {
  const value = Math.max(0, Math.floor(Number(input.value) || 0));
  return Math.min(value, run.test_images - 1);
}

class RunView {
  constructor(run) {
    this.run = run;
    this.api = `/api/runs/${run.run}`;
    this.root = $("run-template").content.firstElementChild.cloneNode(true);
    this.root.dataset.run = run.run;
    this.$ = (name) => this.root.querySelector(`.${name}`);
    this.$("title").textContent = run.source;
    const elbo = run.test_neg_elbo == null ? "" : `, test -ELBO ${run.test_neg_elbo.toFixed(2)} after ${run.epochs} epochs`;
    this.$("meta").textContent = `${run.variant} on ${run.dataset} (${run.input_shape.join("x")})${elbo}`;
    this.sliders = [];
    this.wanted = this.shown = null;
    this.decoding = false;
    if (run.code_limits) this.buildSliders(run.code_limits);
    else {
      this.$("code").hidden = true;
      const note = this.$("no-code");
      note.hidden = false;
      note.textContent = `No sliders or interpolation for this model: ${run.no_code_reason}`;
    }
    this.$("reset").addEventListener("click", () => this.setCode(this.codeA));
    this.$("zero").addEventListener("click", () => this.setCode(this.sliders.map(() => 0)));
    this.hidden = new Set();
    $("runs").appendChild(this.root);
  }

  error(message) {
    const box = this.$("error");
    box.textContent = message;
    box.hidden = !message;
  }

  buildSliders(limits) {
    const box = this.$("sliders");
    limits.forEach((limit, d) => {
      const label = document.createElement("label");
      label.textContent = `z${d}`;
      const slider = document.createElement("input");
      Object.assign(slider, { type: "range", min: -limit, max: limit, step: limit / 100, value: 0 });
      slider.setAttribute("aria-label", `code dimension ${d}`);
      label.htmlFor = slider.id = `run${this.run.run}-z${d}`;
      const value = document.createElement("output");
      value.htmlFor = slider.id;
      slider.addEventListener("input", () => { value.textContent = Number(slider.value).toFixed(2); this.decode(); });
      box.append(label, slider, value);
      this.sliders.push(slider);
    });
  }

  setCode(code) {
    if (!code) return;
    this.sliders.forEach((slider, d) => {
      slider.value = code[d];
      slider.nextElementSibling.textContent = Number(slider.value).toFixed(2);
    });
    this.decode();
  }

  // Live decoding: at most one request in flight; when it lands, decode the newest slider values.
  async decode() {
    this.wanted = this.sliders.map((s) => s.value).join(",");
    if (this.decoding) return;
    this.decoding = true;
    const img = this.$("decoded");
    while (this.shown !== this.wanted) {
      const z = this.wanted;
      if (!(await show(this, img, `${this.api}/decode.png?z=${encodeURIComponent(z)}`))) break;
      this.shown = img.dataset.z = z;
    }
    this.decoding = false;
  }

  async refreshCode(a) {
    await show(this, this.$("image-a"), `${this.api}/image.png?index=${a}`);
    if (!this.run.code_limits) return;
    const response = await fetch(`${this.api}/code?image=${a}`);
    if (!response.ok) return this.error(await errorOf(response));
    this.codeA = (await response.json()).code;
    this.setCode(this.codeA);
  }

  refresh(what) {
    const a = testIndex($("image-a"), this.run), b = testIndex($("image-b"), this.run);
    if (what.code) this.refreshCode(a);
    if (what.code && this.run.code_limits) {
      show(this, this.$("interpolation"), `${this.api}/interpolation.png?a=${a}&b=${b}&steps=${$("steps").value}`);
    }
    if (what.code) {
      const n = Math.min(RECONSTRUCTIONS, this.run.test_images - a);
      show(this, this.$("reconstructions"), `${this.api}/reconstructions.png?start=${a}&n=${n}`);
    }
    if (what.samples) {
      const sampler = $("sampler").value;
      if (this.run.samplers.includes(sampler)) {
        show(this, this.$("samples"), `${this.api}/samples.png?sampler=${sampler}&n=${SAMPLES}&seed=${$("seed").value}`);
      } else this.error(`this model has no sampler ${sampler}`);
    }
  }

  async loadCurves() {
    const response = await fetch(`${this.api}/loss`);
    if (!response.ok) return this.error(await errorOf(response));
    this.curves = await response.json();
    const names = Object.keys(this.curves.series);
    names.forEach((name) => { if (!DEFAULT_CURVES.includes(name)) this.hidden.add(name); });
    const legend = this.$("legend");
    if (!names.length) legend.textContent = "No metrics.jsonl beside this model.";
    names.forEach((name, i) => {
      const label = document.createElement("label");
      const box = Object.assign(document.createElement("input"), { type: "checkbox", checked: !this.hidden.has(name) });
      box.addEventListener("change", () => { box.checked ? this.hidden.delete(name) : this.hidden.add(name); this.drawCurves(); });
      label.style.color = COLOURS[i % COLOURS.length];
      label.append(box, ` ${name}`);
      legend.appendChild(label);
    });
    this.drawCurves();
  }

  drawCurves() {
    const svg = this.$("loss");
    const ns = "http://www.w3.org/2000/svg";
    const add = (tag, attrs, text) => {
      const el = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      if (text !== undefined) el.textContent = text;
      return svg.appendChild(el);
    };
    svg.replaceChildren();
    const { epochs, series } = this.curves;
    const shown = Object.keys(series).filter((name) => !this.hidden.has(name));
    const values = shown.flatMap((name) => series[name]).filter((v) => v !== null);
    if (!values.length) return;
    let lo = Math.min(...values), hi = Math.max(...values);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const eLo = Math.min(...epochs), eHi = Math.max(Math.max(...epochs), eLo + 1);
    const [left, right, top, bottom] = [52, 350, 10, 190];
    const x = (e) => left + (e - eLo) / (eHi - eLo) * (right - left);
    const y = (v) => top + (hi - v) / (hi - lo) * (bottom - top);
    add("rect", { x: left, y: top, width: right - left, height: bottom - top, fill: "none", stroke: "#999" });
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4;
      add("text", { x: left - 4, y: y(v) + 3, "text-anchor": "end" }, v.toPrecision(4));
    }
    for (const e of [eLo, eHi]) add("text", { x: x(e), y: bottom + 13, "text-anchor": "middle" }, e);
    add("text", { x: (left + right) / 2, y: bottom + 26, "text-anchor": "middle" }, "epoch");
    Object.keys(series).forEach((name, i) => {
      if (this.hidden.has(name)) return;
      const colour = COLOURS[i % COLOURS.length];
      const points = epochs.map((e, j) => [e, series[name][j]]).filter(([, v]) => v !== null);
      add("polyline", { points: points.map(([e, v]) => `${x(e)},${y(v)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 1.5 });
      for (const [e, v] of points) add("circle", { cx: x(e), cy: y(v), r: 2.5, fill: colour });
    });
  }
}

function refreshAll(what) { views.forEach((view) => view.refresh(what)); }

async function start() {
  const response = await fetch("/api/runs");
  if (!response.ok) return say(await errorOf(response));
  const runs = await response.json();
  const samplers = [...new Set(runs.flatMap((run) => run.samplers))];
  for (const name of samplers) $("sampler").add(new Option(name, name));
  const fewest = Math.min(...runs.map((run) => run.test_images));
  for (const id of ["image-a", "image-b"]) $(id).max = fewest - 1;
  for (const run of runs) views.push(new RunView(run));
  views.forEach((view) => view.loadCurves());
  refreshAll({ code: true, samples: true });

  const random = (id) => () => { $(id).value = Math.floor(Math.random() * fewest); refreshAll({ code: true }); };
  $("random-a").addEventListener("click", random("image-a"));
  $("random-b").addEventListener("click", random("image-b"));
  for (const id of ["image-a", "image-b", "steps"]) $(id).addEventListener("change", () => refreshAll({ code: true }));
  for (const id of ["seed", "sampler"]) $(id).addEventListener("change", () => refreshAll({ samples: true }));
  $("new-seed").addEventListener("click", () => { $("seed").value = Number($("seed").value) + 1; refreshAll({ samples: true }); });
  document.body.dataset.ready = "true";
}

start().catch((err) => say(`could not start: ${err}`));
