"""`tonrail treasury init / approve / show / order` against the local network over HTTP:
an operator deploys a 2-of-3 treasury from a key file, two approvers approve a USDT payout
order from their key files, and the payee's jetton wallet holds exactly the amount."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from ton_core import Address
from typer.testing import CliRunner, Result

from tests.treasury.conftest import Net
from tonrail.cli import app
from tonrail.localnet.genesis import USDT
from tonrail.rails.ton.api import jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.settings import get_settings
from tonrail.treasury.reader import order_state
from tonrail.treasury.service import payout_jetton_message, propose, wait_for

ATTACH = 100_000_000  # 0.1 TON with the jetton transfer; the excess returns to the treasury


@pytest.fixture
def cli_net(net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Net:
    monkeypatch.setenv("TON_NETWORK", "localnet")
    monkeypatch.setenv("TON_API_URL", f"{net.url}/api/v2")
    monkeypatch.setenv("TON_API_V3_URL", f"{net.url}/api/v3")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))  # no hot wallet key here
    monkeypatch.delenv("TON_MASTER_KEY", raising=False)
    get_settings.cache_clear()
    yield net  # type: ignore[misc]
    get_settings.cache_clear()


def _key_file(tmp_path: Path, net: Net, label: str) -> Path:
    path = tmp_path / f"{label}.key"
    path.write_text(net.seed(label).hex() + "\n")
    return path


async def _cli(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, ["treasury", *args])


async def test_deploy_and_approve_a_usdt_payout_with_key_files(
    cli_net: Net, tmp_path: Path
) -> None:
    net = cli_net
    operator = await net.funded_wallet("operator")
    signers = [await net.funded_wallet(f"approver-{i}") for i in range(3)]
    result = await _cli(
        "init",
        "--signers",
        ",".join(raw(s.address) for s in signers),
        "--threshold",
        "2",
        "--proposers",
        raw(operator.address),
        "--no-hot-wallet-proposer",
        "--key-file",
        str(_key_file(tmp_path, net, "operator")),
        "--wait",
        "20",
    )
    assert result.exit_code == 0, result.output
    found = re.search(r"TREASURY_ADDRESS=(\S+)", result.output)
    assert found is not None
    treasury = found.group(1)

    shown = await _cli("show", treasury)
    assert shown.exit_code == 0, shown.output
    assert "threshold 2 of 3; next order 0" in shown.output
    assert f"proposer 0: {raw(operator.address)}" in shown.output

    master = raw(net.chain.genesis.usdt_master)
    net.chain.faucet(treasury, 5_000 * USDT, "USDT")
    treasury_jettons = await jetton_wallet_of(net.api, master, treasury)

    async def minted() -> bool:
        return await jetton_balance(net.api, treasury_jettons) == 5_000 * USDT

    assert await wait_for(minted, timeout_s=10, poll_s=0.05)
    payee = Address((0, b"\x61" * 32))
    amount = 1_234_567_891  # 1234.567891 USDT
    message = payout_jetton_message(
        Address(treasury_jettons), Address(treasury), payee, amount, "pay_x", attach_ton=ATTACH
    )
    proposed = await propose(net.api, operator, treasury, [message], now=int(time.time()))
    order = raw(proposed.order)

    async def initialised() -> bool:
        state, _ = await net.api.account_state(order)
        return state == "active"

    assert await wait_for(initialised, timeout_s=10, poll_s=0.05)

    first = await _cli("approve", order, "--key-file", str(_key_file(tmp_path, net, "approver-0")))
    assert first.exit_code == 0, first.output
    assert "approvals 1 of 2" in first.output
    payee_jettons = await jetton_wallet_of(net.api, master, raw(payee))
    assert await jetton_balance(net.api, payee_jettons) == 0
    # The same approver again: refused before anything is sent.
    again = await _cli("approve", order, "--key-file", str(_key_file(tmp_path, net, "approver-0")))
    assert again.exit_code == 2 and "already" in again.output

    second = await _cli("approve", order, "--key-file", str(_key_file(tmp_path, net, "approver-2")))
    assert second.exit_code == 0, second.output
    assert "approvals 2 of 2, executed" in second.output

    async def paid() -> bool:
        return await jetton_balance(net.api, payee_jettons) > 0

    assert await wait_for(paid, timeout_s=10, poll_s=0.05)
    assert await jetton_balance(net.api, payee_jettons) == amount
    assert await jetton_balance(net.api, treasury_jettons) == 5_000 * USDT - amount
    state = await order_state(net.api, order)
    assert state.executed and state.approved_by(0) and state.approved_by(2)
    listed = await _cli("order", order)
    assert listed.exit_code == 0 and "executed" in listed.output


async def test_a_bad_key_file_or_config_is_refused(cli_net: Net, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    someone = raw(Address((0, b"\x01" * 32)))
    result = await _cli("init", "--signers", someone, "--threshold", "2", "--key-file", str(bad))
    assert result.exit_code == 2 and "threshold 2 is not between 1 and 1" in result.output
    result = await _cli("init", "--signers", someone, "--threshold", "1", "--key-file", str(bad))
    assert result.exit_code == 2 and "not a valid 24-word TON mnemonic" in result.output
    assert "not a key" not in result.output
