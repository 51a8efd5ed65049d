// The pages' own behaviour, as a static file: the Content-Security-Policy allows scripts from 'self'
// only, and htmx runs with allowEval off, so nothing here or in the templates is evaluated from a string.
(function () {
  // Pairing-code countdowns (.countdown[data-seconds]), on page load and in fragments htmx swaps in.
  function start(el) {
    if (el.dataset.started) return;
    el.dataset.started = "1";
    var end = Date.now() + parseInt(el.dataset.seconds, 10) * 1000;
    var timer = setInterval(function () {
      if (!document.body.contains(el)) { clearInterval(timer); return; }
      var s = Math.max(0, Math.round((end - Date.now()) / 1000));
      el.textContent = s > 0 ? Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0") : "expired — regenerate";
      if (s <= 0) clearInterval(timer);
    }, 1000);
  }
  function scan(root) {
    (root.querySelectorAll ? root.querySelectorAll(".countdown[data-seconds]") : []).forEach(start);
  }
  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:load", function (event) { scan(event.target); });

  // A form with data-confirm asks first; "Cancel" stops the submit before htmx or the browser sees it.
  document.addEventListener("submit", function (event) {
    var form = event.target, message = form && form.dataset && form.dataset.confirm;
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);

  // A polled region with data-poll-pause="selector" skips its refresh while the selector matches
  // (a rename form open, focus inside): the user's typing is never swapped away.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var el = event.detail.elt, pause = el && el.dataset && el.dataset.pollPause;
    if (pause && document.querySelector(pause)) {  // only the polled element's own requests carry it
      event.preventDefault();
    }
  });
})();
