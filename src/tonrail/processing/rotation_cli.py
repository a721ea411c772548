"""`tonrail keys rotate-wallet`: the hot wallet rotation (processing/wallet_rotation.py,
docs/SECURITY.md). Registered on `tonrail keys` by cli.py."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from tonrail.command import cli_actor, run_command
from tonrail.db import Database
from tonrail.errors import Conflict
from tonrail.rails.ton.states import SweepRecovery
from tonrail.settings import Settings

if TYPE_CHECKING:
    from tonrail.processing.wallet_rotation import RotationView


def keys_rotate_wallet(
    confirm: Annotated[
        str, typer.Option(help='type "ROTATE HOT WALLET" to start one (or answer the prompt)')
    ] = "",
    resume: Annotated[
        bool, typer.Option("--resume", help="continue the rotation in progress")
    ] = False,
    cancel: Annotated[
        str | None,
        typer.Option("--cancel", help="cancel the rotation in progress (before its sweep); why"),
    ] = None,
    recover: Annotated[
        SweepRecovery | None,
        typer.Option(
            "--recover",
            help="after a failed sweep: ask for resweep, switch (the rest stays on the old "
            "address) or cancel; a second operator approves (--approve-recovery)",
        ),
    ] = None,
    approve_recovery: Annotated[
        SweepRecovery | None,
        typer.Option(
            "--approve-recovery",
            help="approve the way out another operator asked for (name it) and take it",
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="why (with --recover; the audit log keeps it)")] = "",
    wait_seconds: Annotated[
        float, typer.Option(help="how long to wait for the old wallet's requests to settle")
    ] = 600.0,
    actor: Annotated[str | None, typer.Option(help="who")] = None,
) -> None:
    """Rotate the hot wallet: a new highload wallet v3 with a new key (same kind of envelope),
    signing paused on the old one until its requests settle (docs/SECURITY.md)."""
    from tonrail.processing import wallet_rotation as rot
    from tonrail.rails.ton.states import RotationState as RS

    if cancel is not None:

        async def canceled(db: Database, _: Settings) -> rot.RotationView:
            return await rot.cancel(db, cli_actor(actor), cancel or "")

        c = run_command(canceled)
        typer.echo(f"rotation {c.id} canceled: {c.old_wallet} signs again")
        return
    if recover is not None:

        async def asked(db: Database, _: Settings) -> rot.RotationView:
            from tonrail.processing import rotation_recovery

            return await rotation_recovery.request(db, cli_actor(actor), recover, reason)

        r = run_command(asked)
        typer.echo(f"rotation {r.id}: {recover} asked by {r.recovery_requested_by}; another")
        typer.echo(f"operator approves: tonrail keys rotate-wallet --approve-recovery {recover}")
        return
    if not resume and approve_recovery is None:
        typed = confirm or (
            typer.prompt(f'Type "{rot.CONFIRMATION}" to rotate the hot wallet')
            if sys.stdin.isatty()
            else ""
        )
        if typed != rot.CONFIRMATION:
            typer.echo(f'error: not confirmed: type exactly "{rot.CONFIRMATION}"', err=True)
            raise typer.Exit(2)

    def say(v: rot.RotationView) -> None:
        typer.echo(f"rotation {v.id}: {v.state}")

    async def work(db: Database, settings: Settings) -> rot.RotationView:
        who = cli_actor(actor)
        if approve_recovery is not None:
            from tonrail.processing import rotation_recovery

            v = await rotation_recovery.approve(db, settings, who, approve_recovery)
            if v.state == RS.CANCELED:
                say(v)
                return v
        elif resume:
            v = await rot.current(db)
        else:
            v = await rot.start(db, settings, who)
        say(v)
        if v.state == RS.CREATED:
            typer.echo(f"new wallet {v.new_wallet}, key in {v.new_key_file}")
            v = await rot.pause(db, settings, v.id, who)
            say(v)
        if v.state == RS.PAUSED:
            typer.echo(f"waiting for the requests of {v.old_wallet} to settle")
            v = await rot.wait_drained(db, v.id, who, within_s=wait_seconds)
            say(v)
        wallets = await rot.open_wallets(settings, v)
        try:
            while v.state in (RS.DRAINED, RS.SWEEP_SIGNED):
                if v.state == RS.DRAINED:
                    v = await rot.sign_sweep(db, settings, wallets, v.id, who)
                    say(v)
                v = await rot.settle_sweep(db, settings, wallets, v.id, who, within_s=wait_seconds)
                say(v)
            if v.state == RS.SWEEP_FAILED:
                raise _sweep_failed(v)
            if v.state == RS.SWEPT:
                v = await rot.confirm_deployed(db, wallets, v.id, who, within_s=wait_seconds)
                say(v)
            if v.state == RS.DEPLOYED:
                v = await rot.switch(db, settings, wallets, v.id, who)
                say(v)
            elif v.state == RS.SWITCHED:
                v = await rot.finish(v.id, db)
        finally:
            await wallets.aclose()
        return v

    v = run_command(work)
    if v.state == RS.CANCELED:
        typer.echo(f"{v.old_wallet} signs again; the failed sweep is booked")
    if v.state == RS.SWITCHED:
        typer.echo(f"the service now signs with {v.new_wallet}; workers adopt it at their next")
        typer.echo("round (a worker with another key file stops signing: restart it with the")
        typer.echo(f"new key); {v.old_wallet} is still watched for late deposits")
        from tonrail.rails.ton.chain_view import raw
        from tonrail.settings import get_settings

        configured = get_settings().payment_processor_address.strip()
        if configured and raw(configured) != v.new_wallet:
            typer.echo(
                "PAYMENT_PROCESSOR_ADDRESS still names the old wallet: set it to the new one "
                "and restart serve (invoices show it) and worker (they refuse to start otherwise)"
            )


def _sweep_failed(v: RotationView) -> Conflict:
    waiting = (
        f"; {v.recovery} asked by {v.recovery_requested_by}, waiting for another operator's "
        f"--approve-recovery {v.recovery}"
        if v.recovery
        else ""
    )
    return Conflict(
        f"rotation {v.id}: the sweep failed ({v.error}); what it did is booked "
        "(hot_wallet.sweep_failed); the old wallet stays paused. Choose a way out with "
        "`tonrail keys rotate-wallet --recover resweep|switch|cancel --reason WHY`, approved "
        f"by a second operator with --approve-recovery (docs/SECURITY.md){waiting}",
        code="wallet_rotation_sweep_failed",
    )
