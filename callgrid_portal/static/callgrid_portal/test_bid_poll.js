// A pending test bid: ask its API entry every second; once answered, show the page again.
(function () {
  var node = document.querySelector("[data-poll]");
  if (!node) { return; }
  var tries = 0;
  function again(delay) {
    if (++tries < 90) { setTimeout(poll, delay); }
    else { node.textContent = "No answer yet; reload the page later to see it."; }
  }
  function poll() {
    fetch(node.dataset.poll, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (bid) {
        if (bid && bid.outcome !== "pending") { window.location.reload(); } else { again(1000); }
      })
      .catch(function () { again(2000); });
  }
  setTimeout(poll, 500);
})();
