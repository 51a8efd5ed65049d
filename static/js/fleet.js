// The worker list's bulk bar: "select all on this page", the "N selected" count, and only the field the
// chosen action needs (bid or tags). Without JavaScript every field shows and the form still works.
(function () {
  function boxes() { return document.querySelectorAll('input[name="ids"][form="bulk-form"]'); }
  function refresh() {
    var form = document.getElementById("bulk-form");
    if (!form) return;
    var all = boxes(), checked = 0;
    all.forEach(function (box) { if (box.checked) checked++; });
    var everything = form.querySelector('input[name="all_matching"]');
    var count = form.querySelector("[data-bulk-count]");
    if (count) {
      count.textContent = everything && everything.checked ? "All matching the filter"
        : checked ? checked + " selected" : "Select rows to act on several workers";
      count.classList.toggle("muted", !checked && !(everything && everything.checked));
    }
    var head = document.querySelector("[data-select-all]");
    if (head) { head.checked = all.length > 0 && checked === all.length; head.indeterminate = checked > 0 && checked < all.length; }
    var action = form.querySelector('select[name="action"]').value;
    form.querySelectorAll(".bulk-arg").forEach(function (field) {
      field.hidden = field.dataset.for.split(" ").indexOf(action) < 0;
    });
  }
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.matches && el.matches("[data-select-all]")) {
      boxes().forEach(function (box) { box.checked = el.checked; });
    }
    if (el.closest && (el.closest("#bulk-form") || el.matches('input[form="bulk-form"], [data-select-all]'))) refresh();
  });
  document.addEventListener("DOMContentLoaded", refresh);
  document.addEventListener("htmx:load", refresh);
})();
