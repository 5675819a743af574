"""The web page at ``/``: one self-contained HTML file (no external scripts, fonts or CSS).

It is kept as a Python string so that it ships inside the package without package-data
configuration. The page only calls this app's own ``/v1/predict`` and ``/v1/explain``, and
:func:`content_security_policy` tells the browser so: only this page's own inline script and
style (by their SHA-256), images from this origin or the page's blob: URLs, requests to this
origin, no framing, no forms, no plugins.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re

from .._meta import RESEARCH_NOTICE

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cxrkit: chest X-ray classifier (research only)</title>
<style>
  :root { --fg: #1d2430; --muted: #5b6576; --accent: #2563eb; --warn: #b45309; --bg: #f6f7f9; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
         background: var(--bg); }
  header { padding: 14px 24px; background: #fff; border-bottom: 1px solid #e3e6eb; }
  header h1 { margin: 0; font-size: 20px; }
  header .model { color: var(--muted); font-size: 13px; }
  .notice { margin: 0; padding: 10px 24px; background: #fff4e5; color: #7a3e00; border-bottom: 1px solid #f5d7a8;
            font-weight: 600; }
  main { padding: 20px 24px; max-width: 1100px; }
  #drop { display: block; border: 2px dashed #aab3c2; border-radius: 10px; padding: 26px; text-align: center;
          background: #fff; cursor: pointer; }
  #drop.over { border-color: var(--accent); background: #eef4ff; }
  #drop small { color: var(--muted); }
  .row { display: flex; gap: 20px; flex-wrap: wrap; margin-top: 20px; }
  .panel { background: #fff; border: 1px solid #e3e6eb; border-radius: 10px; padding: 14px; flex: 1 1 300px; }
  .panel h2 { margin: 0 0 10px; font-size: 15px; color: var(--muted); font-weight: 600; }
  .panel img { width: 100%; max-width: 420px; border-radius: 6px; }
  #original { background: #000; }
  .bar { margin: 8px 0; }
  .bar .label { display: flex; justify-content: space-between; font-size: 14px; }
  .bar .track { height: 14px; background: #e8ebf0; border-radius: 7px; overflow: hidden; }
  .bar .fill { height: 100%; background: var(--accent); width: 0; transition: width .3s; }
  .bar.top .fill { background: #16a34a; }
  #predicted { font-size: 22px; font-weight: 700; }
  #other { display: none; margin-top: 6px; padding: 6px 10px; border-radius: 6px; background: #fee2e2; }
  #uncertain { display: none; margin-top: 6px; padding: 6px 10px; border-radius: 6px; background: #fef3c7;
               color: var(--warn); font-weight: 600; }
  #error { display: none; margin-top: 16px; padding: 10px 14px; border-radius: 8px; background: #fde8e8;
           color: #9b1c1c; }
  #status { color: var(--muted); margin-top: 10px; min-height: 1.4em; overflow-wrap: anywhere; }
  .muted { color: var(--muted); font-size: 13px; }
</style>
</head>
<body>
<header>
  <h1>cxrkit chest X-ray classifier</h1>
  <div class="model">model <span id="model-id">__MODEL_ID__</span> &middot; classes: __CLASSES_TEXT__</div>
</header>
<p class="notice" id="notice">__NOTICE__</p>
<main>
  <label id="drop" for="file">
    <strong>Drop a chest X-ray here</strong> or click to choose a file<br>
    <small>PNG, JPEG, BMP, TIFF or DICOM, up to __MAX_MB__ MB. The image is analysed in memory and not stored.</small>
  </label>
  <input id="file" type="file" accept=".png,.jpg,.jpeg,.bmp,.tif,.tiff,.dcm,.dicom,image/*,application/dicom"
         hidden>
  <div id="status" role="status"></div>
  <div id="error" role="alert"></div>
  <div class="row" id="results" hidden>
    <div class="panel">
      <h2>Prediction</h2>
      <div id="predicted"></div>
      <div id="uncertain">Uncertain: the top probability is below __THRESHOLD_TEXT__. Do not rely on this result.</div>
      <div id="other">Other abnormality likely (none of the model's classes): this film needs a reader.</div>
      <div id="bars"></div>
      <p class="muted">Probabilities are calibrated on the run's validation split.</p>
    </div>
    <div class="panel">
      <h2>Image</h2>
      <img id="original" alt="uploaded image">
      <p class="muted" id="no-preview" hidden>This browser cannot show the file (e.g. DICOM); see the overlay.</p>
    </div>
    <div class="panel">
      <h2>Grad-CAM: where the model looked</h2>
      <img id="overlay" alt="Grad-CAM heatmap overlay">
      <p class="muted">Heatmap of the regions that drove the predicted class. Bright areas outside the lungs
        suggest a shortcut, not a finding.</p>
    </div>
  </div>
</main>
<script>
"use strict";
const CLASSES = __CLASSES_JSON__;
const MAX_BYTES = __MAX_BYTES__;
const $ = (id) => document.getElementById(id);
const pretty = (c) => c.replace(/_/g, " ");
let lastOverlay = null, lastOriginal = null;

function showError(msg) { $("error").textContent = msg; $("error").style.display = "block"; }

async function post(path, file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const res = await fetch(path, { method: "POST", body: form });
  if (!res.ok) {
    let detail = res.status + " " + res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (e) {}
    throw new Error(detail);
  }
  return res;
}

function drawBars(probs, top) {
  const bars = $("bars");
  bars.textContent = "";
  for (const c of CLASSES) {
    const p = probs[c] || 0;
    const div = document.createElement("div");
    div.className = "bar" + (c === top ? " top" : "");
    div.dataset.cls = c;
    div.innerHTML = '<div class="label"><span></span><span></span></div>' +
                    '<div class="track"><div class="fill"></div></div>';
    div.querySelector(".label span").textContent = pretty(c);
    div.querySelector(".label span:last-child").textContent = (100 * p).toFixed(1) + " %";
    bars.appendChild(div);
    requestAnimationFrame(() => { div.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%"; });
  }
}

async function analyse(file) {
  $("error").style.display = "none";
  if (file.size > MAX_BYTES) { showError(file.name + " is larger than the upload limit"); return; }
  $("status").textContent = "Analysing " + file.name + " ...";
  $("results").hidden = true;
  try {
    const pred = await (await post("v1/predict", file)).json();
    $("predicted").textContent = pretty(pred.predicted_class) + " (" + (100 * pred.confidence).toFixed(1) + " %)";
    $("predicted").dataset.cls = pred.predicted_class;
    $("uncertain").style.display = pred.uncertain ? "block" : "none";
    $("other").style.display = pred.other_abnormal_flag ? "block" : "none";
    drawBars(pred.probabilities, pred.predicted_class);
    if (lastOriginal) URL.revokeObjectURL(lastOriginal);
    lastOriginal = URL.createObjectURL(file);
    $("original").hidden = false;
    $("no-preview").hidden = true;
    $("original").onerror = () => { $("original").hidden = true; $("no-preview").hidden = false; };
    $("original").src = lastOriginal;
    $("results").hidden = false;
    $("status").textContent = "Computing Grad-CAM ...";
    const blob = await (await post("v1/explain", file)).blob();
    if (lastOverlay) URL.revokeObjectURL(lastOverlay);
    lastOverlay = URL.createObjectURL(blob);
    $("overlay").src = lastOverlay;
    await $("overlay").decode();
    $("status").textContent = "Done: " + file.name;
  } catch (err) {
    $("status").textContent = "";
    showError(err.message);
  }
}

$("file").addEventListener("change", (e) => { if (e.target.files.length) analyse(e.target.files[0]); });
const drop = $("drop");
for (const ev of ["dragenter", "dragover"]) {
  drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const ev of ["dragleave", "drop"]) {
  drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]); });
</script>
</body>
</html>
"""


def render_page(classes: list[str], model_id: str, max_upload_bytes: int, threshold: float) -> str:
    """The page with this model's classes, id and limits filled in (all values escaped)."""
    values = {
        "__MODEL_ID__": html.escape(model_id),
        "__CLASSES_TEXT__": html.escape(", ".join(c.replace("_", " ") for c in classes)),
        "__NOTICE__": html.escape(RESEARCH_NOTICE),
        "__MAX_MB__": f"{max_upload_bytes / 1e6:g}",
        "__THRESHOLD_TEXT__": f"{100 * threshold:g} %",
        "__CLASSES_JSON__": json.dumps(classes).replace("<", "\\u003c"),
        "__MAX_BYTES__": str(int(max_upload_bytes)),
    }
    page = _PAGE
    for key, value in values.items():
        page = page.replace(key, value)
    return page


def content_security_policy(page: str) -> str:
    """The CSP header for ``page``: its inline <script> and <style> allowed by hash, nothing else."""

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
