// The Approvals page's TON Connect panel: an approver connects their own wallet; the server
// says whether it is one of the treasury multisig's signers (and which index); only then are
// the approve buttons offered. A click asks the server for the exact transaction (the order
// contract's `approve` message, built by the same Python code as `tonrail treasury approve`)
// and hands it to the wallet unchanged: this script never builds a message.
// Bundled with @tonconnect/ui by esbuild (scripts/vendor_assets.py) into
// vendor/treasury-wallet.js; served by us, never from a CDN.
import { TonConnectUI } from "@tonconnect/ui";

function csrfToken() {
  const headers = document.body.getAttribute("hx-headers");
  return headers ? JSON.parse(headers)["X-CSRF-Token"] : "";
}

async function answer(r) {
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const err = new Error(body.error ? body.error.message : `the server answered ${r.status}`);
    err.code = body.error ? body.error.code : String(r.status);
    throw err;
  }
  return body;
}

function start() {
  const panel = document.getElementById("treasury-wallet");
  if (!panel) return;
  const status = document.getElementById("treasury-wallet-status");
  const problem = document.getElementById("treasury-wallet-error");
  const ui = new TonConnectUI({
    manifestUrl: `${location.origin}/pay/tonconnect-manifest.json`,
    buttonRootId: "treasury-ton-connect",
    analytics: { mode: "off" },
  });
  // The connected wallet once the server has confirmed it is a signer; else null.
  const state = { address: null, signerIndex: null, checking: null };

  function offer() {
    const ok = state.signerIndex !== null;
    panel.dataset.signer = ok ? String(state.signerIndex) : "";
    for (const b of document.querySelectorAll("button.treasury-approve")) {
      b.disabled = !ok;
      b.title = ok ? `approve from signer ${state.signerIndex}` : "connect a signer's wallet first";
    }
  }

  async function check(address) {
    problem.textContent = "";
    state.address = address;
    state.signerIndex = null;
    offer();
    if (!address) {
      status.textContent = "No wallet connected.";
      return;
    }
    status.textContent = `Checking ${address}…`;
    const url = `/dashboard/treasury/signer?wallet=${encodeURIComponent(address)}`;
    const r = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    const body = await answer(r);
    if (state.address !== address) return; // another wallet connected meanwhile
    if (body.signer) {
      state.signerIndex = body.signer_index;
      status.textContent =
        `Connected: ${body.wallet}, signer ${body.signer_index} of ${body.signers} ` +
        `(${body.threshold} approvals execute an order).`;
    } else {
      status.textContent = `Connected: ${body.wallet}.`;
      problem.textContent =
        `This wallet is not a signer of the treasury ${body.treasury}: it cannot approve ` +
        "its orders. Connect your signer wallet.";
    }
    offer();
  }

  async function approve(orderId) {
    problem.textContent = "";
    if (state.signerIndex === null) throw new Error("connect a signer's wallet first");
    const form = new URLSearchParams({ wallet: state.address, csrf_token: csrfToken() });
    const r = await fetch(`/dashboard/treasury/orders/${encodeURIComponent(orderId)}/approve-message`, {
      method: "POST",
      cache: "no-store",
      headers: { Accept: "application/json", "X-CSRF-Token": csrfToken() },
      body: form,
    });
    const body = await answer(r);
    status.textContent = `Order ${body.order}: confirm the approval in your wallet…`;
    await wallet.ui.sendTransaction(body.transaction);
    status.textContent =
      `Approval sent from signer ${body.signer_index} for order ${body.order}: ` +
      "the list shows it once the chain has it.";
    document.body.dispatchEvent(new Event("approvals-changed"));
  }

  function failed(err) {
    problem.textContent = err && err.message ? err.message : String(err);
    problem.dataset.code = (err && err.code) || "";
  }

  ui.onStatusChange((w) => {
    state.checking = check(w ? w.account.address : null).catch(failed);
  });
  // Buttons live in the list, which htmx reloads: one listener on the document.
  document.addEventListener("click", (ev) => {
    const button = ev.target.closest ? ev.target.closest("button.treasury-approve") : null;
    if (!button) return;
    ev.preventDefault();
    approve(button.dataset.order).catch(failed);
  });
  document.body.addEventListener("htmx:afterSwap", offer);
  // The page's wallet object: the tests put a wallet of their own in place of `ui` and call
  // `connected(address)` as TON Connect's status change would.
  const wallet = {
    ui,
    approve,
    connected: (address) => check(address).catch(failed),
  };
  window.tonrailTreasuryWallet = wallet;
}

start();
