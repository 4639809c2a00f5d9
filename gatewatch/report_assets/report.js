// Sortable tables, the record-only toggle, and a marker saying the page is ready.
(function () {
  "use strict";
  function cellValue(row, i) {
    var text = row.cells[i] ? row.cells[i].textContent.trim() : "";
    var num = parseFloat(text.replace(/[%$,]/g, ""));
    return isNaN(num) || !/^[-$\d.]/.test(text) ? text.toLowerCase() : num;
  }
  function sortBy(table, i) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var dir = table.dataset.sortCol === String(i) && table.dataset.sortDir === "asc" ? "desc" : "asc";
    rows.sort(function (a, b) {
      var x = cellValue(a, i), y = cellValue(b, i);
      var c = x < y ? -1 : x > y ? 1 : 0;
      return dir === "asc" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    table.dataset.sortCol = String(i);
    table.dataset.sortDir = dir;
  }
  function setInfo(show) {
    document.querySelectorAll("tr.info, section.incident.info").forEach(function (el) {
      el.style.display = show ? "" : "none";
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
        th.addEventListener("click", function () { sortBy(table, i); });
      });
    });
    var toggle = document.getElementById("show-info");
    if (toggle) {
      toggle.addEventListener("change", function () { setInfo(toggle.checked); });
      setInfo(false);
    }
    var ready = document.createElement("div");
    ready.id = "gw-ready";
    ready.hidden = true;
    ready.dataset.incidents = String(document.querySelectorAll("section.incident").length);
    ready.dataset.figures = String(document.querySelectorAll("svg").length);
    ready.dataset.errors = String(window.gwErrors ? window.gwErrors.length : -1);
    document.body.appendChild(ready);
  });
})();
