"""The atlas's style sheet and script, written next to the pages as ``atlas.css`` and ``atlas.js``.

They are kept here as strings (not package data files) so that any install of the package,
editable or not, can write them. Both are small and dependency free: the pages open from
``file://`` without a network.
"""

CSS = """\
:root {
  --fg: #1d2330; --muted: #5d6577; --line: #dde1e8; --bg: #ffffff; --panel: #f6f7f9;
  --accent: #2a5db0; --neg: rgb(33, 102, 171); --pos: rgb(179, 23, 43);
}
* { box-sizing: border-box; }
html { background: var(--bg); }
body {
  margin: 0; color: var(--fg); background: var(--bg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Helvetica, Arial, sans-serif;
}
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header.top {
  display: flex; align-items: center; gap: 16px; flex-wrap: wrap;
  padding: 10px 24px; border-bottom: 1px solid var(--line); background: var(--panel);
}
header.top .crumbs { font-size: 15px; }
header.top .crumbs .sep { color: var(--muted); margin: 0 6px; }
header.top .nav { margin-left: auto; display: flex; gap: 8px; align-items: center; }
.btn {
  display: inline-block; padding: 3px 10px; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; color: var(--fg); font-size: 13px;
}
.btn:hover { text-decoration: none; border-color: var(--accent); color: var(--accent); }
.btn.disabled { color: #b5bac4; border-color: #eceef2; }
.hint { color: var(--muted); font-size: 12px; }
main { padding: 16px 24px 40px; max-width: 1280px; }
h1 { font-size: 22px; margin: 4px 0 4px; }
h2 { font-size: 16px; margin: 26px 0 4px; padding-bottom: 3px; border-bottom: 1px solid var(--line); }
p.lead, p.note { color: var(--muted); margin: 2px 0 10px; }
.stats { display: flex; gap: 22px; flex-wrap: wrap; margin: 6px 0 4px; }
.stat b { display: block; font-size: 17px; }
.stat span { color: var(--muted); font-size: 12px; }
table.layers { border-collapse: collapse; margin-top: 10px; min-width: 520px; }
table.layers th, table.layers td { text-align: left; padding: 6px 14px 6px 0; border-bottom: 1px solid var(--line); }
table.layers th { color: var(--muted); font-weight: 600; font-size: 12px; }
.strip { display: flex; flex-wrap: wrap; gap: 10px 6px; align-items: flex-start; }
figure { margin: 0; }
figure.ex { width: 66px; text-align: center; }
figure.ex.conv { width: 132px; }
figure.ex img, .pair img { width: 62px; height: auto; border: 1px solid var(--line); display: block; margin: 0 auto; }
figure.ex figcaption { font-size: 11px; color: var(--muted); line-height: 1.25; margin-top: 2px; }
figure.ex figcaption b { color: var(--fg); font-size: 12px; display: block; }
figure.ex figcaption span { display: block; white-space: nowrap; }
img.px { image-rendering: pixelated; image-rendering: crisp-edges; }
.pair { display: flex; gap: 4px; justify-content: center; }
.boxwrap { position: relative; display: inline-block; }
.boxwrap .box {
  position: absolute; border: 2px solid #ff8c00; box-shadow: 0 0 0 1px rgba(0,0,0,.35); pointer-events: none;
}
.views { display: flex; flex-wrap: wrap; gap: 18px; }
figure.view { text-align: center; }
figure.view img { width: 168px; height: auto; border: 1px solid var(--line); display: block; }
figure.view figcaption { font-size: 12px; margin-top: 4px; max-width: 168px; }
figure.view figcaption .name { font-weight: 600; display: block; }
figure.view figcaption .val { color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 12px; margin-top: 12px; }
.card {
  border: 1px solid var(--line); border-radius: 8px; padding: 6px; text-align: center; background: #fff;
  color: var(--fg);
}
.card:hover { border-color: var(--accent); text-decoration: none; }
.card img { width: 100%; height: auto; display: block; border-radius: 4px; }
.card .noimg {
  width: 100%; aspect-ratio: 1; background: var(--panel); border-radius: 4px; display: flex;
  align-items: center; justify-content: center; color: var(--muted); font-size: 11px;
}
.card .title { font-weight: 600; margin-top: 4px; font-size: 13px; }
.card .meta { color: var(--muted); font-size: 11px; line-height: 1.3; }
.card .meta span { display: block; }
.card [hidden] { display: none !important; }
.controls {
  display: flex; gap: 16px; align-items: center; flex-wrap: wrap; padding: 8px 12px;
  background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
}
.controls label { font-size: 13px; color: var(--muted); }
.controls select { font: inherit; padding: 2px 4px; }
.controls .count { margin-left: auto; color: var(--muted); font-size: 13px; }
.legend { display: flex; align-items: center; gap: 8px; font-size: 12px; color: var(--muted); margin: 6px 0 8px; }
.legend .bar { width: 180px; height: 12px; border: 1px solid var(--line); border-radius: 2px;
  background: linear-gradient(to right, var(--neg), #ffffff, var(--pos)); }
.legend .ends { display: flex; justify-content: space-between; width: 180px; font-size: 11px; }
.legend .col { display: flex; flex-direction: column; gap: 1px; }
table.attr { border-collapse: separate; border-spacing: 4px 3px; }
table.attr th {
  font-size: 12px; color: var(--muted); text-align: right; padding-right: 6px; font-weight: 600;
  white-space: nowrap;
}
table.attr td { text-align: center; }
table.attr img { width: 56px; height: auto; border: 1px solid var(--line); display: block; }
.scroll { overflow-x: auto; }
table.attr td.scores { text-align: left; font-size: 11px; color: var(--muted); padding-left: 8px; white-space: nowrap; }
table.attr td.scores span { display: block; line-height: 1.3; }
table.attr td.scores b { color: var(--fg); }
table.scores { border-collapse: collapse; margin: 8px 0 6px; }
table.scores th, table.scores td { padding: 4px 12px 4px 0; border-bottom: 1px solid var(--line); text-align: right; }
table.scores th:first-child, table.scores td:first-child { text-align: left; }
table.scores th { color: var(--muted); font-weight: 600; font-size: 12px; vertical-align: bottom; }
table.scores th .dir { display: block; font-weight: 400; font-size: 11px; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { color: var(--accent); }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
section.scores details { margin-top: 6px; }
section.scores summary { cursor: pointer; color: var(--accent); font-size: 13px; }
.templates { display: flex; gap: 14px; flex-wrap: wrap; }
.templates figure { text-align: center; }
.templates img { width: 168px; height: auto; border: 1px solid var(--line); display: block; }
.templates figcaption { font-size: 12px; color: var(--muted); }
svg.hist { display: block; max-width: 100%; }
svg.hist text { font-size: 11px; fill: var(--muted); font-family: inherit; }
svg.hist .bars { fill: #8ea4c8; }
svg.hist .axis { stroke: #9aa1ad; stroke-width: 1; }
svg.hist .mark { stroke-width: 1.5; stroke-dasharray: 4 3; }
ol.near { list-style: none; padding: 0; margin: 8px 0; display: flex; flex-wrap: wrap; gap: 10px; }
ol.near li { width: 96px; text-align: center; font-size: 12px; }
ol.near img, ol.near .ph {
  width: 80px; height: auto; border: 1px solid var(--line); display: block; margin: 0 auto 2px;
}
ol.near .ph { height: 80px; background: var(--panel); color: var(--muted); font-size: 11px; line-height: 80px; }
ol.near .sim { color: var(--muted); display: block; font-size: 11px; }
.two { display: flex; gap: 40px; flex-wrap: wrap; align-items: flex-start; }
.two > section { flex: 1 1 420px; min-width: 0; }
"""

JS = """\
// Unit atlas: keyboard navigation on unit pages; sorting and filtering on layer pages.
(function () {
  'use strict';

  // Left/right arrows follow the page's rel="prev" / rel="next" links.
  document.addEventListener('keydown', function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    var t = e.target;
    if (t && /^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName)) return;
    var rel = e.key === 'ArrowLeft' ? 'prev' : (e.key === 'ArrowRight' ? 'next' : null);
    if (!rel) return;
    var link = document.querySelector('a[rel~="' + rel + '"]');
    if (link) {
      e.preventDefault();
      window.location.href = link.href;
    }
  });

  var grid = document.getElementById('unit-grid');
  if (!grid) return;
  var sortSel = document.getElementById('sort-by');
  var orderSel = document.getElementById('sort-order');
  var labelSel = document.getElementById('filter-label');
  var count = document.getElementById('shown-count');
  var cards = Array.prototype.slice.call(grid.querySelectorAll('.card'));

  function num(card, key) {
    var v = parseFloat(card.getAttribute('data-' + key));
    return isNaN(v) ? null : v;
  }

  function apply() {
    var key = sortSel ? sortSel.value : 'unit';
    var desc = orderSel ? orderSel.value === 'desc' : false;
    var sorted = cards.slice().sort(function (a, b) {
      var x = num(a, key), y = num(b, key);
      if (x === null && y === null) return num(a, 'unit') - num(b, 'unit');
      if (x === null) return 1;   // units without the value go last
      if (y === null) return -1;
      if (x !== y) return desc ? y - x : x - y;
      return num(a, 'unit') - num(b, 'unit');
    });
    var want = labelSel ? labelSel.value : '';
    var shown = 0;
    sorted.forEach(function (card) {
      var ok = !want || card.getAttribute('data-label') === want;
      card.style.display = ok ? '' : 'none';
      if (ok) shown += 1;
      grid.appendChild(card);
    });
    if (count) count.textContent = 'showing ' + shown + ' of ' + cards.length + ' units';
  }

  if (sortSel) sortSel.addEventListener('change', function () {
    var opt = sortSel.options[sortSel.selectedIndex];
    if (orderSel && opt && opt.getAttribute('data-order')) orderSel.value = opt.getAttribute('data-order');
    apply();
  });
  var viewSel = document.getElementById('thumb-view');
  if (viewSel) viewSel.addEventListener('change', function () {
    cards.forEach(function (card) {
      Array.prototype.forEach.call(card.querySelectorAll('[data-view]'), function (el) {
        el.hidden = el.getAttribute('data-view') !== viewSel.value;
      });
    });
  });
  if (orderSel) orderSel.addEventListener('change', apply);
  if (labelSel) labelSel.addEventListener('change', apply);
  apply();
})();
// Tables with class "sortable": a click on a column's header sorts the rows by that column's data-value (numbers
// when they all are, text otherwise), first in the header's data-order, then the other way; empty values go last.
(function () {
  'use strict';
  function value(row, col) {
    var cell = row.cells[col];
    return cell ? (cell.getAttribute('data-value') || '') : '';
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    var body = table.tBodies[0];
    if (!body || !table.tHead) return;
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var first = th.getAttribute('data-order') === 'desc' ? 'descending' : 'ascending';
        var now = th.getAttribute('aria-sort');
        var dir = now === first ? (first === 'ascending' ? 'descending' : 'ascending') : first;
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', dir);
        var rows = Array.prototype.slice.call(body.rows);
        var numeric = rows.every(function (r) { var v = value(r, col); return v === '' || !isNaN(parseFloat(v)); });
        var sign = dir === 'ascending' ? 1 : -1;
        rows.map(function (r, i) { return [r, i]; }).sort(function (a, b) {
          var x = value(a[0], col), y = value(b[0], col);
          if (x === '' || y === '') return x === y ? a[1] - b[1] : (x === '' ? 1 : -1);
          var c = numeric ? parseFloat(x) - parseFloat(y) : (x < y ? -1 : (x > y ? 1 : 0));
          return c !== 0 ? sign * c : a[1] - b[1];
        }).forEach(function (pair) { body.appendChild(pair[0]); });
      });
    });
  });
})();
"""
