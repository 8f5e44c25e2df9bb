// The bids list's "Refresh every 30 s" switch: shown only with JavaScript, remembered in this
// browser, and only on the newest page (a paged or sorted list keeps what is on screen).
(function () {
  var box = document.getElementById("auto-refresh");
  if (!box) { return; }
  box.closest("label").hidden = false;
  var KEY = "callgrid.bids.autoRefresh";
  var timer = null;
  function busy() {
    var active = document.activeElement;
    return active && active.closest && active.closest("form") && active.id !== "auto-refresh";
  }
  function tick() {
    if (busy()) { return; }  // never reload under someone typing a filter
    window.location.reload();
  }
  function apply() {
    if (timer) { clearInterval(timer); timer = null; }
    if (box.checked && !box.disabled) { timer = setInterval(tick, 30000); }
  }
  try { box.checked = !box.disabled && window.localStorage.getItem(KEY) === "on"; } catch (e) {}
  box.addEventListener("change", function () {
    try { window.localStorage.setItem(KEY, box.checked ? "on" : "off"); } catch (e) {}
    apply();
  });
  apply();
})();
