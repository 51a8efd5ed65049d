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

  // A form with data-confirm asks first, in the page's own dialog (#confirm-dialog in base.html);
  // "Cancel" stops the submit before htmx or the browser sees it, the confirm button sends it again.
  document.addEventListener("submit", function (event) {
    var form = event.target, message = form && form.dataset && form.dataset.confirm;
    if (!message) return;
    if (form.dataset.confirmed) { delete form.dataset.confirmed; return; }
    event.preventDefault();
    event.stopPropagation();
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {  // a very old browser: its own prompt
      if (window.confirm(message)) { form.dataset.confirmed = "1"; form.requestSubmit(); }
      return;
    }
    var submitter = event.submitter;
    dialog.querySelector(".confirm-message").textContent = message;
    var ok = dialog.querySelector(".confirm-ok");
    ok.textContent = form.dataset.confirmButton || (submitter && submitter.textContent.trim()) || "Confirm";
    ok.className = "btn confirm-ok " + (submitter && submitter.classList.contains("btn-danger") ? "btn-danger" : "btn-primary");
    dialog.onclose = function () {
      if (dialog.returnValue !== "ok") return;
      form.dataset.confirmed = "1";
      if (submitter && submitter.form === form) form.requestSubmit(submitter); else form.requestSubmit();
    };
    dialog.returnValue = "";
    dialog.showModal();
    dialog.querySelector(".confirm-cancel").focus();
  }, true);

  // Tabs that switch in place (nav[data-tabs] a[data-tab] over sections of the same id); the links
  // still go to a page drawn with that tab, so they work without JavaScript and can be bookmarked.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("nav[data-tabs] a[data-tab]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    var nav = link.closest("nav[data-tabs]");
    var panel = document.getElementById(link.dataset.tab);
    if (!panel) return;
    event.preventDefault();
    nav.querySelectorAll("a[data-tab]").forEach(function (other) {
      var shown = other === link, section = document.getElementById(other.dataset.tab);
      if (shown) other.setAttribute("aria-current", "page"); else other.removeAttribute("aria-current");
      if (section) section.hidden = !shown;
    });
    history.replaceState(null, "", link.href);
  });

  // The viewer's time zone: the browser's, as a cookie the portal reads (webapp/timezones.py). A first
  // visit was rendered in UTC: once the cookie is set, that page is drawn again in the right zone. An
  // account that chose a zone keeps it (data-zone-from="account").
  (function () {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    if (!zone || !/^[A-Za-z0-9_\/+-]{1,64}$/.test(zone)) return;  // IANA names: written as they are
    var had = (document.cookie.match(/(?:^|; )tz=([^;]*)/) || [])[1];
    if (had === zone) return;
    document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
    var root = document.documentElement;
    if (root.dataset.zoneFrom === "browser" && root.dataset.zone !== zone && document.readyState !== "complete") {
      location.reload();
    }
  })();

  // A button with data-copy="selector" copies that element's text (the pairing code) to the clipboard.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.dataset.copy);
    if (!source) return;
    var text = source.textContent.trim(), label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    function done(ok) {
      button.textContent = ok ? "Copied ✓" : "Select and copy it";
      setTimeout(function () { button.textContent = label; }, 2000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
    } else {  // plain http: no clipboard API; select the code so Ctrl+C takes it
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      done(ok);
    }
  });

  // The Download page marks the build for this PC: the server guessed from the User-Agent
  // (data-bitness on [data-builds]); Chromium's User-Agent says "Win64" everywhere, so its
  // userAgentData, where present, has the last word.
  document.addEventListener("DOMContentLoaded", function () {
    var builds = document.querySelector("[data-builds]");
    if (!builds) return;
    function mark(bitness) {
      builds.querySelectorAll("[data-build]").forEach(function (card) {
        var mine = card.dataset.build === bitness;
        card.classList.toggle("recommended", mine);
        var note = card.querySelector(".for-this-pc");
        if (note) note.hidden = !mine;
      });
    }
    if (builds.dataset.bitness) mark(builds.dataset.bitness);
    var uad = navigator.userAgentData;
    if (uad && uad.platform === "Windows" && uad.getHighEntropyValues) {
      uad.getHighEntropyValues(["bitness"]).then(function (v) {
        if (v.bitness === "64" || v.bitness === "32") mark(v.bitness);
      }, function () {});
    }
  });

  // A polled region with data-poll-pause="selector" skips its refresh while the selector matches
  // (a rename form open, focus inside): the user's typing is never swapped away.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var el = event.detail.elt, pause = el && el.dataset && el.dataset.pollPause;
    if (pause && document.querySelector(pause)) {  // only the polled element's own requests carry it
      event.preventDefault();
    }
  });
})();
