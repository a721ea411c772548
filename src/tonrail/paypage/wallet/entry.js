// The checkout page's TON Connect button: asks the customer's wallet to send exactly the
// message that pays the invoice. Bundled with @tonconnect/ui, @ton/core and buffer by esbuild
// (scripts/vendor_assets.py) into vendor/pay-wallet.js; served by us, never from a CDN.
//   TON:  a transfer of the invoice's amount to pay_to with the reference as text comment.
//   USDT: a jetton transfer (TEP-74) to the customer's own USDT jetton wallet, sending the
//         amount to pay_to, excesses back to the customer, 1 nanoton forwarded with the
//         reference as text comment (the transfer_notification our deposit watcher credits).
import { TonConnectUI } from "@tonconnect/ui";
import { Address, beginCell } from "@ton/core";

const JETTON_TRANSFER = 0x0f8a7ea5;

function commentCell(text) {
  return beginCell().storeUint(0, 32).storeStringTail(text).endCell();
}

function boc(cell) {
  return cell.toBoc().toString("base64");
}

export function tonMessage(inv) {
  return { address: inv.payTo, amount: inv.amountMinor, payload: boc(commentCell(inv.comment)) };
}

export function jettonMessage(inv, senderJettonWallet, owner) {
  const body = beginCell()
    .storeUint(JETTON_TRANSFER, 32)
    .storeUint(0, 64) // query_id
    .storeCoins(BigInt(inv.amountMinor))
    .storeAddress(Address.parse(inv.payTo)) // destination: the owner of the receiving wallet
    .storeAddress(Address.parse(owner)) // response_destination: excesses back to the payer
    .storeBit(false) // no custom_payload
    .storeCoins(BigInt(inv.forwardNanoton))
    .storeBit(true)
    .storeRef(commentCell(inv.comment)) // forward_payload: the reference as a text comment
    .endCell();
  return {
    address: Address.parse(senderJettonWallet).toString({ bounceable: true }),
    amount: inv.attachNanoton,
    payload: boc(body),
  };
}

function invoiceOf(el) {
  const d = el.dataset;
  return {
    id: d.invoice,
    asset: d.asset,
    payTo: d.payTo,
    amountMinor: d.amountMinor,
    comment: d.comment,
    network: d.network || null,
    attachNanoton: d.attachNanoton,
    forwardNanoton: d.forwardNanoton,
    secondsLeft: Number(d.secondsLeft || 300),
    loadedAt: Date.now(),
  };
}

async function jettonWalletOf(inv, owner) {
  const url = `/pay/${encodeURIComponent(inv.id)}/jetton-wallet?owner=${encodeURIComponent(owner)}`;
  const r = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : "could not find your USDT wallet");
  return body.jetton_wallet;
}

function start() {
  const el = document.getElementById("ton-connect-pay");
  if (!el) return;
  const inv = invoiceOf(el);
  const button = document.getElementById("ton-connect-send");
  const problem = document.getElementById("ton-connect-error");
  const ui = new TonConnectUI({
    manifestUrl: `${location.origin}/pay/tonconnect-manifest.json`,
    buttonRootId: "ton-connect",
    analytics: { mode: "off" }, // no telemetry about our customers to third parties
  });
  let waitingForWallet = false;

  // The exact transaction handed to the wallet (validUntil: 5 min, never past the invoice).
  async function transaction() {
    const elapsed = Math.floor((Date.now() - inv.loadedAt) / 1000);
    const left = Math.max(inv.secondsLeft - elapsed, 0);
    const tx = { validUntil: Math.floor(Date.now() / 1000) + Math.min(300, left), messages: [] };
    if (inv.network) tx.network = inv.network;
    // What is left to pay now (pay.js lowers it after a partial payment).
    const due = { ...inv, amountMinor: el.dataset.amountMinor };
    if (inv.asset === "TON") {
      tx.messages.push(tonMessage(due));
    } else {
      const owner = wallet.ui.account.address;
      tx.messages.push(jettonMessage(due, await jettonWalletOf(inv, owner), owner));
    }
    return tx;
  }

  async function pay() {
    problem.textContent = "";
    if (!wallet.ui.connected) {
      waitingForWallet = true;
      await wallet.ui.openModal();
      return;
    }
    await wallet.ui.sendTransaction(await transaction());
    button.textContent = "Sent: waiting for the network…";
  }

  function failed(err) {
    problem.textContent = err && err.message ? err.message : String(err);
  }

  ui.onStatusChange((w) => {
    if (w && waitingForWallet) {
      waitingForWallet = false;
      pay().catch(failed);
    }
  });
  button.addEventListener("click", () => pay().catch(failed));
  button.disabled = false;
  // The page's wallet object: the tests put a recording wallet in place of `ui`.
  const wallet = { ui, transaction, pay };
  window.tonrailWallet = wallet;
}

start();
