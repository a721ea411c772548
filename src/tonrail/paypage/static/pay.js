// The hosted checkout page: polls the invoice's status and shows it (no inline script: CSP).
// Every text set here goes through textContent: nothing from the server becomes markup.
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  if (!root || !root.dataset.statusUrl) return;
  var pollMs = Math.max(parseInt(root.dataset.pollMs, 10) || 1000, 250);
  var LIVE = { open: true, partially_paid: true };
  var deadline = null;

  function setDeadline(secondsLeft) {
    if (secondsLeft === null || secondsLeft === undefined || secondsLeft === "") return;
    deadline = Date.now() + Number(secondsLeft) * 1000;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function tick() {
    var out = document.getElementById("countdown");
    if (!out || deadline === null) return;
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    out.textContent = (h ? h + ":" + pad(m) : m) + ":" + pad(s);
    out.setAttribute("datetime", "PT" + left + "S");
  }

  function setText(selector, text) {
    var nodes = root.querySelectorAll(selector);
    for (var i = 0; i < nodes.length; i++) nodes[i].textContent = text;
  }

  function show(state) {
    root.dataset.state = state;
    var nodes = root.querySelectorAll("[data-show-when]");
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].hidden = nodes[i].dataset.showWhen.split(" ").indexOf(state) < 0;
    }
  }

  // After a partial payment the link, its QR code and TON Connect ask for the rest.
  function payTheRest(status) {
    var link = document.getElementById("deep-link");
    if (!link || !status.deep_link || link.getAttribute("href") === status.deep_link) return;
    link.setAttribute("href", status.deep_link);
    var qr = document.getElementById("qr");
    if (qr) qr.src = "/pay/" + encodeURIComponent(status.id) + "/qr.svg?remaining=" + status.amount_remaining_minor;
    var wallet = document.getElementById("ton-connect-pay");
    if (wallet) wallet.dataset.amountMinor = String(status.amount_remaining_minor);
  }

  function apply(status) {
    setText(".amount-received", status.amount_received);
    setText(".amount-remaining", status.amount_remaining);
    payTheRest(status);
    setDeadline(status.seconds_left);
    if (status.state !== root.dataset.state) show(status.state);
    tick();
    document.dispatchEvent(new CustomEvent("tonrail:status", { detail: status }));
  }

  var timer = null;
  function poll() {
    fetch(root.dataset.statusUrl, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (status) { if (status) apply(status); })
      .catch(function () { /* offline for a moment: the next poll tries again */ })
      .then(function () {
        if (LIVE[root.dataset.state] || root.dataset.state === "processing") {
          timer = setTimeout(poll, pollMs);
        }
      });
  }

  setDeadline(root.dataset.secondsLeft);
  tick();
  setInterval(tick, 1000);
  if (LIVE[root.dataset.state] || root.dataset.state === "processing") {
    timer = setTimeout(poll, pollMs);
  }
})();
