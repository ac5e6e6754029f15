"""The gallery page's template, stylesheet and script, inlined so the folder opens offline."""

# ruff: noqa: E501 - HTML template lines are kept whole so the markup reads as one element each

from __future__ import annotations

__all__ = ["CSS", "JS", "TEMPLATE"]

CSS = """
:root { color-scheme: light dark; --bg: #f6f6f4; --fg: #1d1d1f; --muted: #6b6b70;
  --card: #fff; --line: #d9d9dc; --new: #1a7f37; --cached: #57606a; --missing: #b42318; }
@media (prefers-color-scheme: dark) { :root { --bg: #141416; --fg: #ececef; --muted: #9a9aa2;
  --card: #1f1f23; --line: #34343a; --new: #3fb950; --cached: #8b949e; --missing: #f85149; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  background: var(--bg); color: var(--fg); }
header.top { padding: 16px 20px 8px; }
h1 { font-size: 20px; margin: 0 0 4px; }
.summary { color: var(--muted); margin: 0; }
.controls { position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; gap: 10px 16px;
  align-items: end; padding: 10px 20px; background: var(--bg); border-bottom: 1px solid var(--line); }
.controls label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
.controls select, .controls button { font: inherit; padding: 4px 8px; }
.controls .count { margin-left: auto; color: var(--muted); }
.sheets { padding: 8px 20px; }
.sheets video { max-width: 100%; max-height: 360px; }
#grid { display: grid; gap: 16px; padding: 16px 20px 40px;
  grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px;
  display: flex; flex-direction: column; gap: 8px; min-width: 0; }
.card[hidden] { display: none; }
.card.picked { outline: 2px solid #0969da; }
.card .head { display: flex; justify-content: space-between; gap: 8px; align-items: start; }
.card .head label { display: flex; gap: 6px; align-items: start; cursor: pointer; }
.badge { font-size: 11px; border-radius: 10px; padding: 1px 8px; border: 1px solid currentColor;
  white-space: nowrap; }
.badge.new { color: var(--new); } .badge.cached, .badge.unknown { color: var(--cached); }
.badge.missing { color: var(--missing); }
.media { display: grid; grid-template-columns: 2fr 1fr; gap: 6px; align-items: start; }
.media.single { grid-template-columns: 1fr; }
figure { margin: 0; min-width: 0; }
figure video, figure .empty { width: 100%; background: #000; border-radius: 4px; display: block; }
figure .empty { aspect-ratio: 16 / 9; color: #bbb; display: grid; place-items: center;
  font-size: 12px; padding: 8px; text-align: center; }
figcaption { font-size: 11px; color: var(--muted); }
.prompt { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0;
  font-size: 12px; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
code { font-size: 11px; }
#compare { position: fixed; inset: 0; z-index: 5; background: rgba(0, 0, 0, .92); color: #eee;
  display: flex; flex-direction: column; }
#compare[hidden] { display: none; }
#compare .bar { display: flex; gap: 12px; align-items: center; padding: 10px 16px; }
#compare .bar input[type=range] { flex: 1; }
#compare .bar button { font: inherit; padding: 4px 10px; }
#compare-tiles { flex: 1; display: grid; gap: 8px; padding: 8px 16px 16px; overflow: auto;
  grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); align-content: start; }
#compare-tiles figure video { max-height: 70vh; object-fit: contain; }
#compare-tiles figcaption { color: #ccc; font-size: 12px; }
"""

JS = """
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const grid = document.getElementById("grid");
  const cards = Array.from(grid.querySelectorAll(".card"));
  const selects = Array.from(document.querySelectorAll("select[data-axis]"));
  const sortSelect = document.getElementById("sort");
  const count = document.getElementById("count");
  const compareButton = document.getElementById("compare-button");
  const clearButton = document.getElementById("clear-button");
  const info = (card) => data.cards[Number(card.dataset.index)];

  function filter() {
    const want = selects.filter((s) => s.value !== "").map((s) => [s.dataset.axis, s.value]);
    let shown = 0;
    for (const card of cards) {
      const values = info(card).matrix;
      const ok = want.every(([axis, value]) => values[axis] === value);
      card.hidden = !ok;
      if (ok) shown += 1;
    }
    count.textContent = shown + " of " + cards.length + " shown";
  }

  // cards without a cost (not made yet) go last in either direction
  function money(card, field, sign) {
    const value = info(card)[field];
    return value === null || value === undefined ? Infinity : sign * value;
  }

  function sort() {
    const how = sortSelect.value;
    const rank = (card) => {
      if (how.startsWith("axis:")) {
        const axis = how.slice(5);
        return [data.axes[axis].indexOf(info(card).matrix[axis])];
      }
      if (how === "estimated-asc") return [money(card, "estimated_usd", 1)];
      if (how === "estimated-desc") return [money(card, "estimated_usd", -1)];
      if (how === "actual-desc") return [money(card, "actual_usd", -1)];
      return [];
    };
    const order = cards.slice().sort((a, b) => {
      const ra = rank(a);
      const rb = rank(b);
      for (let i = 0; i < ra.length; i += 1) {
        if (ra[i] !== rb[i]) return ra[i] < rb[i] ? -1 : 1;
      }
      return Number(a.dataset.index) - Number(b.dataset.index);
    });
    for (const card of order) grid.appendChild(card);
  }

  function picked() {
    return cards.filter((card) => card.querySelector("input.pick").checked);
  }

  function updatePicks() {
    const chosen = picked();
    for (const card of cards) card.classList.toggle("picked", chosen.includes(card));
    compareButton.disabled = chosen.length === 0;
    compareButton.textContent = "Compare (" + chosen.length + ")";
  }

  // --- compare: chosen videos side by side, one transport for all -------------------------
  const overlay = document.getElementById("compare");
  const tiles = document.getElementById("compare-tiles");
  const playButton = document.getElementById("compare-play");
  const seek = document.getElementById("compare-seek");
  const clock = document.getElementById("compare-time");
  let players = [];
  let timer = null;

  function tile(src, poster, caption) {
    const figure = document.createElement("figure");
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.preload = "auto";
    video.loop = false;
    if (poster) video.poster = poster;
    video.src = src;
    const label = document.createElement("figcaption");
    label.textContent = caption;
    figure.append(video, label);
    tiles.appendChild(figure);
    return video;
  }

  function longest() {
    return players.reduce((m, v) => Math.max(m, Number.isFinite(v.duration) ? v.duration : 0), 0);
  }

  function everyone(fn) { for (const v of players) fn(v); }

  function lead() { return players.find((v) => !v.ended) || players[0]; }

  function tick() {
    if (!players.length) return;
    const master = lead();
    const length = longest();
    if (length > 0 && document.activeElement !== seek) {
      seek.value = String(Math.round((master.currentTime / length) * 1000));
    }
    clock.textContent = master.currentTime.toFixed(2) + " / " + length.toFixed(2) + " s";
    if (!master.paused) {
      // keep every tile on the leader's clock
      for (const v of players) {
        const target = Math.min(master.currentTime, Number.isFinite(v.duration) ? v.duration : 0);
        if (!v.ended && Math.abs(v.currentTime - target) > 0.08) v.currentTime = target;
      }
    }
    if (players.every((v) => v.paused || v.ended)) playButton.textContent = "Play";
  }

  function play() {
    const restart = players.every((v) => v.ended);
    everyone((v) => {
      if (restart) v.currentTime = 0;
      v.play().catch(() => {});
    });
    playButton.textContent = "Pause";
  }

  function pause() {
    everyone((v) => v.pause());
    playButton.textContent = "Play";
  }

  function openCompare() {
    const chosen = picked();
    if (!chosen.length) return;
    tiles.textContent = "";
    players = [];
    const first = info(chosen[0]);
    if (first.reference) {
      players.push(tile(first.reference, first.reference_poster, "reference clip"));
    }
    for (const card of chosen) {
      const c = info(card);
      if (c.video) {
        const take = c.takes > 1 ? " · take " + c.take : "";
        players.push(tile(c.video, c.poster, c.label + take));
      }
    }
    overlay.hidden = false;
    seek.value = "0";
    playButton.textContent = "Play";
    timer = window.setInterval(tick, 100);
  }

  function closeCompare() {
    pause();
    window.clearInterval(timer);
    timer = null;
    everyone((v) => { v.removeAttribute("src"); v.load(); });
    players = [];
    tiles.textContent = "";
    overlay.hidden = true;
  }

  playButton.addEventListener("click", () => {
    if (players.some((v) => !v.paused && !v.ended)) pause(); else play();
  });
  seek.addEventListener("input", () => {
    const at = (Number(seek.value) / 1000) * longest();
    everyone((v) => { v.currentTime = Math.min(at, Number.isFinite(v.duration) ? v.duration : 0); });
  });
  document.getElementById("compare-close").addEventListener("click", closeCompare);
  document.addEventListener("keydown", (event) => {
    if (overlay.hidden) return;
    if (event.key === "Escape") closeCompare();
    if (event.key === " " && event.target === document.body) {
      event.preventDefault();
      playButton.click();
    }
  });

  for (const s of selects) s.addEventListener("change", filter);
  sortSelect.addEventListener("change", sort);
  grid.addEventListener("change", (event) => {
    if (event.target.classList.contains("pick")) updatePicks();
  });
  compareButton.addEventListener("click", openCompare);
  clearButton.addEventListener("click", () => {
    for (const card of cards) card.querySelector("input.pick").checked = false;
    updatePicks();
  });

  window.motionflowReport = { filter, sort, openCompare, closeCompare, play, pause,
    players: () => players };
  filter();
  updatePicks();
})();
"""

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="referrer" content="no-referrer">
<title>{{ g.recipe }} · motionflow report</title>
<style>{{ css }}</style>
</head>
<body>
<header class="top">
  <h1>{{ g.recipe }}</h1>
  <p class="summary">
    {{ g.cards | length }} video{{ "" if g.cards | length == 1 else "s" }}
    · {{ counts.new }} new · {{ counts.cached }} cached
    {%- if counts.missing %} · {{ counts.missing }} missing{% endif %}
    · provider {{ g.provider }}
    · estimated {{ money(totals.estimated) }} (new in the last run: {{ money(totals.new) }})
    {%- if simulated %} · simulated: nothing was charged{% else %}
    · charged {{ money(totals.actual) }}{% endif %}
    {%- if g.run_started %} · last run {{ g.run_started }}{% endif %}
  </p>
</header>
<nav class="controls" aria-label="filter and sort">
  {%- for axis, values in g.axes.items() %}
  <label>{{ axis }}
    <select data-axis="{{ axis }}">
      <option value="">all</option>
      {%- for value in values %}
      <option value="{{ value }}">{{ value }}</option>
      {%- endfor %}
    </select>
  </label>
  {%- endfor %}
  <label>sort by
    <select id="sort">
      <option value="">matrix order</option>
      {%- for axis in g.axes %}
      <option value="axis:{{ axis }}">{{ axis }}</option>
      {%- endfor %}
      <option value="estimated-asc">estimated cost, low first</option>
      <option value="estimated-desc">estimated cost, high first</option>
      <option value="actual-desc">charged, high first</option>
    </select>
  </label>
  <button type="button" id="compare-button" disabled>Compare (0)</button>
  <button type="button" id="clear-button">Clear selection</button>
  <span class="count" id="count"></span>
</nav>
{%- if g.sheets %}
<section class="sheets">
  {%- for stage, video in g.sheets %}
  <figure>
    <video controls muted playsinline preload="metadata" src="{{ url(video) }}"></video>
    <figcaption>{{ stage }}: every variant side by side (<a href="{{ url(video) }}">{{ video }}</a>)</figcaption>
  </figure>
  {%- endfor %}
</section>
{%- endif %}
<main id="grid">
{%- for c in g.cards %}
<article class="card" data-index="{{ c.index }}" data-variant="{{ c.variant }}" data-take="{{ c.take }}">
  <div class="head">
    <label><input type="checkbox" class="pick" value="{{ c.index }}"{% if not c.video %} disabled{% endif %}>
      <strong>{{ c.label }}</strong>{% if c.takes > 1 %} · take {{ c.take }}{% endif %}</label>
    <span class="badge {{ c.status }}" title="{{ c.created_at or '' }}">{{ status_text[c.status] }}</span>
  </div>
  <div class="media{% if not c.reference %} single{% endif %}">
    <figure>
      {%- if c.video %}
      <video class="result" controls muted playsinline preload="metadata"{% if c.poster %} poster="{{ url(c.poster) }}"{% endif %} src="{{ url(c.video) }}"></video>
      <figcaption><a href="{{ url(c.video) }}">{{ c.video }}</a></figcaption>
      {%- else %}
      <div class="empty">not made yet: run the recipe</div>
      {%- endif %}
    </figure>
    {%- if c.reference %}
    <figure>
      <video class="reference" controls muted playsinline preload="metadata"{% if c.reference_poster %} poster="{{ url(c.reference_poster) }}"{% endif %} src="{{ url(c.reference) }}"></video>
      <figcaption>reference clip</figcaption>
    </figure>
    {%- endif %}
  </div>
  {%- if c.prompt is not none %}
  <p class="prompt">{{ c.prompt }}</p>
  {%- endif %}
  <dl>
    {%- for axis, value in c.matrix.items() %}
    <dt>{{ axis }}</dt><dd>{{ value }}</dd>
    {%- endfor %}
    {%- for name, value in c.settings.items() %}
    <dt>{{ name }}</dt><dd>{{ value }}</dd>
    {%- endfor %}
    {%- if c.video %}
    <dt>cost</dt><dd>estimated {{ money(c.estimated_usd) }} · charged {{ money(c.actual_usd) }}{% if c.simulated %} (simulated){% endif %}</dd>
    <dt>job id</dt><dd><code>{{ c.job_id or "-" }}</code></dd>
    <dt>made</dt><dd>{{ c.created_at or "-" }}</dd>
    {%- endif %}
  </dl>
</article>
{%- endfor %}
</main>
<section id="compare" hidden aria-label="compare">
  <div class="bar">
    <button type="button" id="compare-play">Play</button>
    <input type="range" id="compare-seek" min="0" max="1000" value="0" aria-label="seek">
    <span id="compare-time">0.00 s</span>
    <button type="button" id="compare-close">Close</button>
  </div>
  <div id="compare-tiles"></div>
</section>
<script type="application/json" id="report-data">{{ data }}</script>
<script>{{ js }}</script>
</body>
</html>
"""
