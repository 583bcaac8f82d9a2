// Sortable tables, no library: click a header to sort by it (numbers by their raw value in data-v,
// else by the number and unit in the text, else as text); click again to reverse.
(function () {
  "use strict";
  var SCALE = {ns: 1e-9, "\u00b5s": 1e-6, us: 1e-6, ms: 1e-3, s: 1, B: 1, kB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12,
               mJ: 1e-3, J: 1, kJ: 1e3, MJ: 1e6, mW: 1e-3, W: 1, kW: 1e3, k: 1e3, M: 1e6, G: 1e9};
  function key(cell) {
    if (!cell) { return [2, ""]; }
    var v = cell.getAttribute("data-v");
    if (v !== null && v !== "") { return [0, parseFloat(v)]; }
    var text = cell.textContent.trim();
    var m = /^([-+]?[\d,]*\.?\d+(?:e[-+]?\d+)?)\s*([A-Za-z\u00b5]+)?/.exec(text);
    if (m) {
      var num = parseFloat(m[1].replace(/,/g, ""));
      var unit = m[2] && SCALE[m[2]] !== undefined ? SCALE[m[2]] : 1;
      return [0, num * unit];
    }
    return [text === "\u2014" || text === "" ? 2 : 1, text.toLowerCase()];
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var desc = th.classList.contains("asc");
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.classList.remove("asc", "desc"); });
    th.classList.add(desc ? "desc" : "asc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var ka = key(a.cells[col]), kb = key(b.cells[col]);
      if (ka[0] !== kb[0]) { return ka[0] - kb[0]; }
      var r = ka[1] < kb[1] ? -1 : (ka[1] > kb[1] ? 1 : 0);
      return desc ? -r : r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      if (!table.tHead) { return; }
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
        th.addEventListener("click", function () { sortBy(table, i, th); });
      });
    });
  });
}());
