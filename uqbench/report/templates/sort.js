(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v === null) { return { text: cell.textContent.trim() }; }
    if (v === "") { return { missing: true }; }
    var x = parseFloat(v);
    return isNaN(x) ? { text: v } : { num: x };
  }
  function compare(a, b, dir) {
    if (a.missing || b.missing) { return (a.missing ? 1 : 0) - (b.missing ? 1 : 0); }
    if (a.num !== undefined && b.num !== undefined) { return dir * (a.num - b.num); }
    return dir * String(a.text).localeCompare(String(b.text));
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = th.querySelector("button");
      if (!button) { return; }
      button.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) { return compare(key(r1.cells[col]), key(r2.cells[col]), dir); });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
