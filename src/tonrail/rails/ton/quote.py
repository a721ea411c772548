"""The TON rail's quote for the router: available or not, and a fee from recent history."""

from __future__ import annotations

from tonrail.rails.base import PaymentView, Quote

# Until there is history, a fee at the high end of what a batched transfer costs here.
DEFAULT_FEE_NANOTON = {"TON": 10_000_000, "USDT": 60_000_000}


class TonQuoter:
    """`quote` of the Rail protocol for TON (the payout loop itself is processing/ton_loop.py).

    Built with fees read beforehand (`measured_fees` in ton_batch.py, defaults where none):
    quoting reads nothing."""

    name = "ton"

    def __init__(self, fees: dict[str, int], usdt_enabled: bool):
        self.fees = fees
        self.usdt_enabled = usdt_enabled

    async def quote(self, payment: PaymentView) -> Quote:
        if payment.asset not in ("TON", "USDT"):
            return Quote("ton", 0, "TON", 0, False, "asset_not_on_ton")
        if payment.asset == "USDT" and not self.usdt_enabled:
            return Quote("ton", 0, "TON", 0, False, "usdt_not_configured")
        fee = self.fees.get(payment.asset, DEFAULT_FEE_NANOTON[payment.asset])
        return Quote("ton", fee, "TON", payment.target_confirmation_seconds, True)
