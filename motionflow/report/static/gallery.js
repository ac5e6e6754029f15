
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const grid = document.getElementById("grid");
  const cards = Array.from(grid.querySelectorAll(".card"));
  const selects = Array.from(document.querySelectorAll("select[data-axis]"));
  const sortSelect = document.getElementById("sort");
  const runSelect = document.getElementById("run");
  const viewSelect = document.getElementById("view");
  const rowsSelect = document.getElementById("rows");
  const columnsSelect = document.getElementById("columns");
  const matrix = document.getElementById("matrix");
  const table = document.getElementById("matrix-table");
  const count = document.getElementById("count");
  const compareButton = document.getElementById("compare-button");
  const clearButton = document.getElementById("clear-button");
  const info = (card) => data.cards[Number(card.dataset.index)];
  const byIndex = (index) => cards.find((card) => card.dataset.index === String(index));
  const runs = new Map(data.runs.map((r) => [r.id, r]));

  function inRun(card) { return card.dataset.run === runSelect.value; }

  function filter() {
    const want = selects.filter((s) => s.value !== "").map((s) => [s.dataset.axis, s.value]);
    let shown = 0;
    let total = 0;
    for (const card of cards) {
      const values = info(card).matrix;
      const mine = inRun(card);
      const ok = mine && want.every(([axis, value]) => values[axis] === value);
      card.hidden = !ok;
      if (mine) total += 1;
      if (ok) shown += 1;
    }
    count.textContent = shown + " of " + total + " shown";
    if (!matrix.hidden) buildMatrix();
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
    if (!matrix.hidden) buildMatrix();
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

  // --- favourites: kept in this browser by result key; the page writes the final command ---
  const favStore = "motionflow.favourites." + data.recipe;
  const resultKey = (c) => c.key || c.video_digest || c.run + "#" + c.index;
  function loadFavs() {
    try {
      const value = JSON.parse(window.localStorage.getItem(favStore) || "[]");
      return Array.isArray(value) ? value.filter((k) => typeof k === "string") : [];
    } catch (error) {
      return [];
    }
  }
  let favs = new Set(loadFavs());
  function saveFavs() {
    try {
      window.localStorage.setItem(favStore, JSON.stringify(Array.from(favs).sort()));
    } catch (error) { /* storage off (private mode): favourites last for this visit */ }
  }
  function toggleFav(index) {
    const key = resultKey(data.cards[index]);
    if (favs.has(key)) favs.delete(key); else favs.add(key);
    saveFavs();
    updateFavs();
  }

  function quote(word) {
    return /^[A-Za-z0-9_.,=:\/@%+-]+$/.test(word) ? word : "'" + word.replace(/'/g, "'\\''") + "'";
  }

  // the fewest groups of --only filters that select exactly these variants
  function cover(variants, axes) {
    const sets = axes.map((a) => Array.from(new Set(variants.map((v) => v[a]))));
    const product = sets.reduce((n, s) => n * s.length, 1);
    if (product === variants.length) return [axes.map((a, i) => [a, sets[i]])];
    let split = -1;
    sets.forEach((s, i) => {
      if (s.length > 1 && (split < 0 || s.length < sets[split].length)) split = i;
    });
    return sets[split].flatMap((value) =>
      cover(variants.filter((v) => v[axes[split]] === value), axes));
  }

  function parseChanges(text) {
    const changes = {};
    const bad = [];
    for (const word of text.split(/\s+/).filter(Boolean)) {
      const at = word.indexOf("=");
      if (at > 0) changes[word.slice(0, at)] = word.slice(at + 1); else bad.push(word);
    }
    return [changes, bad];
  }

  function favouriteCards() {
    const seen = new Set();
    return data.cards.filter((c) => {
      const key = resultKey(c);
      if (!c.video || !favs.has(key) || seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }

  // a change naming a matrix axis moves the variants along it (--only); others become --var
  function commands(chosen, changes) {
    const axes = Object.keys(data.axes);
    const moved = {};
    const varChanges = {};
    for (const [name, value] of Object.entries(changes)) {
      if (axes.includes(name)) moved[name] = value; else varChanges[name] = value;
    }
    const groups = new Map();
    for (const c of chosen) {
      const vars = Object.assign({}, (runs.get(c.run) || {}).overrides || {}, varChanges);
      const id = JSON.stringify(Object.keys(vars).sort().map((k) => [k, vars[k]]));
      if (!groups.has(id)) groups.set(id, { vars, variants: new Map() });
      const matrix = Object.assign({}, c.matrix, moved);
      groups.get(id).variants.set(JSON.stringify(axes.map((a) => matrix[a])), matrix);
    }
    const lines = [];
    for (const { vars, variants } of groups.values()) {
      const cells = axes.length ? cover(Array.from(variants.values()), axes) : [[]];
      for (const cell of cells) {
        const args = [];
        for (const [axis, values] of cell) {
          const all = data.axes[axis];
          if (values.length === all.length && values.every((v) => all.includes(v))) continue;
          for (const value of values) args.push("--only", quote(axis + "=" + value));
        }
        for (const name of Object.keys(vars).sort()) {
          args.push("--var", quote(name + "=" + vars[name]));
        }
        lines.push(["motionflow", "plan", quote(data.recipe_path), ...args].join(" "));
      }
    }
    return lines;
  }

  const promote = document.getElementById("promote");
  const changesInput = document.getElementById("changes");
  function updatePromote() {
    const chosen = favouriteCards();
    promote.hidden = chosen.length === 0;
    if (!chosen.length) return;
    const [changes, bad] = parseChanges(changesInput.value);
    const plans = commands(chosen, changes);
    const draft = chosen.reduce((sum, c) => sum + (c.estimated_usd || 0), 0);
    document.getElementById("promote-title").textContent =
      "Favourites: " + chosen.length + " take" + (chosen.length === 1 ? "" : "s");
    document.getElementById("promote-command").textContent = plans.join("\n") + "\n";
    document.getElementById("promote-note").textContent =
      (bad.length ? "ignored (not NAME=VALUE): " + bad.join(" ") + ". " : "") +
      "plan prices these variants before anything is spent; replace plan with run to make" +
      " them. As drafts they were estimated at $" + draft.toFixed(2) + ".";
  }

  function updateFavs() {
    for (const card of cards) {
      const on = favs.has(resultKey(info(card)));
      card.classList.toggle("favourite", on);
      const star = card.querySelector("button.fav");
      if (star) {
        star.setAttribute("aria-pressed", on ? "true" : "false");
        star.textContent = on ? "\u2605" : "\u2606";
      }
    }
    updatePromote();
    if (!matrix.hidden) buildMatrix();
  }

  // --- grid: one axis down, another across; cells hold the shown cards of that pair ------
  const axisValue = (c, axis) => (axis === "take" ? String(c.take) : c.matrix[axis]);
  function axisValues(axis, shown) {
    if (axis !== "take") return data.axes[axis] || [];
    const most = shown.reduce((m, c) => Math.max(m, c.takes), 1);
    return Array.from({ length: most }, (_, i) => String(i + 1));
  }

  function cellItem(c) {
    const item = document.createElement("div");
    item.className = "item";
    item.dataset.index = String(c.index);
    if (c.video) {
      const video = document.createElement("video");
      video.controls = true;
      video.muted = true;
      video.playsInline = true;
      video.preload = "metadata";
      if (c.poster) video.poster = c.poster;
      video.src = c.video;
      item.appendChild(video);
    } else {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = c.gone ? "gone: no longer in out/ nor in the cache" : "not made yet";
      item.appendChild(empty);
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    const card = byIndex(c.index);
    if (c.video) {
      const pick = document.createElement("input");
      pick.type = "checkbox";
      pick.className = "cell-pick";
      pick.title = "compare";
      pick.checked = card.querySelector("input.pick").checked;
      item.classList.toggle("picked", pick.checked);
      const star = document.createElement("button");
      star.type = "button";
      star.className = "fav cell-fav";
      const on = favs.has(resultKey(c));
      star.setAttribute("aria-pressed", on ? "true" : "false");
      star.textContent = on ? "\u2605" : "\u2606";
      star.title = "favourite";
      meta.append(pick, star);
    }
    const rest = Object.keys(data.axes).filter((a) => a !== rowsSelect.value && a !== columnsSelect.value);
    const words = rest.map((a) => c.matrix[a]);
    if (c.takes > 1 && rowsSelect.value !== "take" && columnsSelect.value !== "take") {
      words.push("take " + c.take);
    }
    const text = document.createElement("span");
    text.textContent = words.join(" · ");
    meta.appendChild(text);
    item.appendChild(meta);
    return item;
  }

  function buildMatrix() {
    const rows = rowsSelect.value;
    const columns = columnsSelect.value;
    const shown = cards.filter((card) => !card.hidden).map(info);
    table.textContent = "";
    const head = table.createTHead().insertRow();
    const corner = document.createElement("th");
    corner.className = "corner";
    corner.textContent = rows + " \u2193 / " + columns + " \u2192";
    head.appendChild(corner);
    const across = axisValues(columns, shown);
    for (const value of across) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = value;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const down of axisValues(rows, shown)) {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = down;
      row.appendChild(th);
      for (const value of across) {
        const td = row.insertCell();
        const here = shown.filter((c) => axisValue(c, rows) === down && axisValue(c, columns) === value);
        if (!here.length) {
          td.className = "none";
          td.textContent = "\u2014";
        }
        for (const c of here) td.appendChild(cellItem(c));
      }
    }
  }

  function setView() {
    const gridView = viewSelect.value === "grid";
    grid.hidden = gridView;
    matrix.hidden = !gridView;
    document.getElementById("rows-label").hidden = !gridView;
    document.getElementById("columns-label").hidden = !gridView;
    if (gridView) buildMatrix(); else table.textContent = "";
  }

  table.addEventListener("change", (event) => {
    if (!event.target.classList.contains("cell-pick")) return;
    const item = event.target.closest(".item");
    byIndex(item.dataset.index).querySelector("input.pick").checked = event.target.checked;
    item.classList.toggle("picked", event.target.checked);
    updatePicks();
  });
  table.addEventListener("click", (event) => {
    if (!event.target.classList.contains("cell-fav")) return;
    toggleFav(Number(event.target.closest(".item").dataset.index));
  });

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

  function runName(id) {
    const run = runs.get(id);
    return run && run.started_at ? run.started_at.slice(0, 19).replace("T", " ") : id;
  }

  function openCompare() {
    const chosen = picked();
    if (!chosen.length) return;
    tiles.textContent = "";
    players = [];
    const several = new Set(chosen.map((card) => card.dataset.run)).size > 1;
    const first = info(chosen[0]);
    if (first.reference) {
      players.push(tile(first.reference, first.reference_poster, "reference clip"));
    }
    for (const card of chosen) {
      const c = info(card);
      if (c.video) {
        const take = c.takes > 1 ? " \u00b7 take " + c.take : "";
        const run = several ? " \u00b7 run " + runName(c.run) : "";
        players.push(tile(c.video, c.poster, c.label + take + run));
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
  runSelect.addEventListener("change", filter);
  sortSelect.addEventListener("change", sort);
  viewSelect.addEventListener("change", setView);
  rowsSelect.addEventListener("change", buildMatrix);
  columnsSelect.addEventListener("change", buildMatrix);
  changesInput.addEventListener("input", updatePromote);
  document.getElementById("fav-clear").addEventListener("click", () => {
    favs = new Set();
    saveFavs();
    updateFavs();
  });
  grid.addEventListener("change", (event) => {
    if (event.target.classList.contains("pick")) updatePicks();
  });
  grid.addEventListener("click", (event) => {
    if (event.target.classList.contains("fav")) {
      toggleFav(Number(event.target.closest(".card").dataset.index));
    }
  });
  compareButton.addEventListener("click", openCompare);
  clearButton.addEventListener("click", () => {
    for (const card of cards) card.querySelector("input.pick").checked = false;
    updatePicks();
    if (!matrix.hidden) buildMatrix();
  });

  window.motionflowReport = { filter, sort, openCompare, closeCompare, play, pause,
    players: () => players, commands: () => commands(favouriteCards(),
      parseChanges(changesInput.value)[0]), buildMatrix };
  filter();
  updatePicks();
  updateFavs();
})();
