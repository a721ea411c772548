"""The TON rail's payout adapter: plain data in (`PaymentView`, integers), messages out.

`HighloadRail` is the `BatchRail` of rails/base.py for TON: the out message that pays each
payout, one signed highload v3 request for a batch, and sending it. It never sees the
database: processing/ton_loop.py allocates the query id, stores the signed request together
with the attempts in one transaction, and sends what it stored (again after a crash)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ton_core import Address

from tonrail.chain.address import payout_bounce
from tonrail.rails.base import PaymentView, Refusal
from tonrail.rails.ton.api import TonApi
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.highload import (
    HighloadWallet,
    OutTransfer,
    SignedRequest,
    destination_refusal,
    jetton_transfer,
    sign_request,
    ton_transfer,
)


@dataclass(frozen=True)
class HighloadRail:
    wallet: HighloadWallet
    signer: Callable[[bytes], bytes]
    api: TonApi
    jetton_wallet: str | None  # raw address of our USDT jetton wallet, when USDT is enabled
    forward_nanoton: int  # TON forwarded with a jetton transfer's notification

    def refusal(self, payment: PaymentView) -> Refusal | None:
        """Why `payment` cannot be paid from the hot wallet at all (it fails, never retried).

        Our own hot wallet or jetton wallet as the destination: the wallet would skip such a
        message and report it unsent (the API refuses them once the worker has recorded its
        accounts; this catches one created before)."""
        try:
            destination = Address(payment.counterparty or "")
            payout_bounce(payment.counterparty or "", payment.asset)
        except Exception:  # ton_core and pytoniq raise several types for malformed input
            return Refusal("ton_destination_invalid", "the destination is not a valid TON address")
        own = {raw(self.wallet.address).upper()}
        if self.jetton_wallet:
            own.add(self.jetton_wallet.upper())
        if raw(destination).upper() in own:
            return Refusal(
                "destination_own_wallet",
                "the destination is this service's own hot wallet or jetton wallet",
            )
        reason = destination_refusal(destination, payment.asset)
        return None if reason is None else Refusal("ton_destination_invalid", reason)

    def transfer(self, payment: PaymentView, *, attach: int, jetton_query_id: int) -> OutTransfer:
        """The out message for one payout; the comment carries our payment id. `attach` is
        the TON a jetton transfer carries for its fees."""
        destination = Address(payment.counterparty or "")
        comment = payment.id
        if payment.asset == "TON":
            # The address's own flag; a raw one (no flag) bounceable, as docs/TON-RAIL.md says.
            bounce = payout_bounce(payment.counterparty or "", "TON")
            return ton_transfer(destination, payment.amount, bounce, comment)
        if self.jetton_wallet is None:
            raise RuntimeError("USDT payouts need the USDT jetton master to be configured")
        return jetton_transfer(
            Address(self.jetton_wallet),
            destination,
            payment.amount,
            attach_ton=attach,
            forward_ton=self.forward_nanoton,
            response=self.wallet.address,
            query_id=jetton_query_id,
            comment=comment,
        )

    def sign(
        self, transfers: Sequence[OutTransfer], *, query_id: int, created_at: int, deploy: bool
    ) -> SignedRequest:
        """One request carrying `transfers`, signed with the hot wallet's key."""
        return sign_request(
            self.wallet,
            self.signer,
            transfers,
            query_id=query_id,
            created_at=created_at,
            deploy=deploy,
        )

    async def send(self, message: str) -> None:
        """Hand a signed request (base64 BOC) to the network; repeatable."""
        await self.api.send_boc(message)
