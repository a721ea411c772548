"""The ctypes binding keeps 64-bit values intact and frees what the library returns."""

from __future__ import annotations

import base64

from ton_core import (
    Address,
    Cell,
    CurrencyCollection,
    InternalMsgInfo,
    MessageAny,
    ShardAccount,
    VmStack,
)

from tonrail.localnet import emulator as em
from tonrail.localnet.boc import NONE_SHARD_ACCOUNT, b64, cell_from, method_id
from tonrail.localnet.genesis import Genesis


def _mint(dest: Address, amount: int, lt: int, init: object = None) -> str:
    info = InternalMsgInfo(
        True, False, False, Address((-1, b"\0" * 32)), dest, CurrencyCollection(amount), 0, 0, lt, 1
    )
    return b64(MessageAny(info, init, Cell.empty()).serialize())  # type: ignore[arg-type]


def test_balance_above_4_29_ton_and_lt_above_2_32_survive() -> None:
    config = em.Config(em.load_config_b64())
    emu = em.TransactionEmulator(config)
    g = Genesis("emulator-test")
    amount = 5 * 10**9 + 123  # above 2^32 nanoton: a 32-bit argument would truncate it
    lt = 2**32 + 1000
    result = emu.emulate(
        b64(NONE_SHARD_ACCOUNT),
        _mint(g.faucet_address, amount, lt - 10, g.faucet_state_init),
        unixtime=1_800_000_000,
        lt=lt,
    )
    assert result.success, result.error
    assert result.shard_account is not None
    sa = ShardAccount.deserialize(cell_from(result.shard_account).begin_parse())
    assert sa.last_trans_lt == lt
    # The balance is the minted amount minus the real gas of deploying the wallet.
    assert 5 * 10**9 > sa.account.storage.balance.grams > 4_295_000_000
    # The get-method path gets the balance as a 64-bit argument too.
    state = sa.account.storage.state.state_init
    got = em.run_get_method(
        config,
        code_b64=b64(state.code),
        data_b64=b64(state.data),
        address=g.faucet_address.to_str(is_user_friendly=False),
        unixtime=1_800_000_000,
        balance=amount,
        method_id=method_id("seqno"),
        stack_b64=b64(VmStack.serialize([])),
    )
    assert got.success and got.vm_exit_code == 0
    emu.close()
    config.close()


def test_invalid_boc_is_an_error_not_a_crash() -> None:
    config = em.Config(em.load_config_b64())
    emu = em.TransactionEmulator(config)
    result = emu.emulate(base64.b64encode(b"junk").decode(), "junk", unixtime=1, lt=1)
    assert not result.success
    emu.close()
    config.close()
