// Pairing-code countdowns (.countdown[data-seconds]), on page load and in fragments htmx swaps in.
// A static file rather than an inline script: the Content-Security-Policy allows scripts from 'self' only.
(function () {
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
})();
