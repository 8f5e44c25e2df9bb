// The header's menu at phone width: without this file the links simply stack (no-JS works).
// A file of the project's, so the Content-Security-Policy (script-src 'self') allows it.
(function () {
  "use strict";
  var header = document.querySelector("header.site");
  var toggle = header && header.querySelector(".menu-toggle");
  if (!toggle) {
    return;
  }
  header.classList.add("has-menu");
  toggle.hidden = false;
  toggle.addEventListener("click", function () {
    var open = header.classList.toggle("open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });
})();
