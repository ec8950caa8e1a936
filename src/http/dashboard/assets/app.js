// Herald dashboard: progressive enhancement only; every page works without it.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf"]');
  csrf = csrf ? csrf.getAttribute("content") : "";

  // A message page that is still pending or processing follows its status.
  var live = document.querySelector("[data-poll]");
  if (live) {
    var url = live.getAttribute("data-poll");
    var tick = function () {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (m) {
          if (!m) { return; }
          if (m.status !== live.getAttribute("data-status")) { window.location.reload(); return; }
          setTimeout(tick, 1000);
        })
        .catch(function () { setTimeout(tick, 3000); });
    };
    setTimeout(tick, 1000);
  }

  // Template editor: a live preview as you type.
  var editor = document.querySelector("form[data-preview]");
  if (editor) {
    var out = document.getElementById("preview");
    var timer = null;
    var run = function () {
      var body = new URLSearchParams(new FormData(editor));
      fetch(editor.getAttribute("data-preview"), {
        method: "POST", credentials: "same-origin", body: body,
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" }
      })
        .then(function (r) { return r.json(); })
        .then(function (p) {
          out.textContent = "";
          if (p.error) {
            var e = document.createElement("p");
            e.className = "bad"; e.textContent = p.error;
            out.appendChild(e);
            return;
          }
          ["subject", "body", "html_body"].forEach(function (k) {
            if (p[k] === null || p[k] === undefined) { return; }
            var h = document.createElement("div");
            h.className = "muted"; h.textContent = k;
            var pre = document.createElement("pre");
            pre.textContent = p[k];
            out.appendChild(h); out.appendChild(pre);
          });
        });
    };
    editor.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 300); });
    run();
  }
})();
