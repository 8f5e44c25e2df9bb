// The live call log: htmx polls /live/rows/ for calls newer than the newest shown; this
// file says which ("after"), stops the polls while paused, and keeps the table short.
// A file of the project's, so the Content-Security-Policy (script-src 'self') allows it.
(function () {
  "use strict";
  var rows = document.getElementById("live-rows");
  var toggle = document.getElementById("live-toggle");
  var state = document.getElementById("live-state");
  if (!rows || !toggle || !state) {
    return;
  }
  var running = state.textContent;
  var paused = false;
  toggle.hidden = false;

  toggle.addEventListener("click", function () {
    paused = !paused;
    toggle.textContent = paused ? "Resume" : "Pause";
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    state.textContent = paused ? "Paused: new calls wait until you resume." : running;
  });

  rows.addEventListener("htmx:configRequest", function (event) {
    if (paused) {
      event.preventDefault();  // no request while paused; the poll keeps ticking
      return;
    }
    event.detail.parameters.after = rows.dataset.after || "0";
  });

  rows.addEventListener("htmx:afterSwap", function () {
    var all = rows.querySelectorAll("tr[data-call-id]");
    // The highest id shown: rows are in time order, and ids need not follow time exactly.
    var after = parseInt(rows.dataset.after || "0", 10);
    for (var j = 0; j < all.length; j++) {
      after = Math.max(after, parseInt(all[j].getAttribute("data-call-id"), 10));
    }
    rows.dataset.after = String(after);
    var empty = rows.querySelector("tr.live-empty");
    if (empty && all.length) {
      empty.remove();
    }
    var keep = parseInt(rows.dataset.keep || "200", 10);
    for (var i = keep; i < all.length; i++) {
      all[i].remove();
    }
  });
})();
