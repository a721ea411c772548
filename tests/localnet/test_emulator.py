"""The ctypes binding keeps 64-bit values intact and frees what the library returns."""

from __future__ import annotations

import base64

import pytest
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
from tonrail.localnet.config import load_config
from tonrail.localnet.genesis import Genesis


def _mint(dest: Address, amount: int, lt: int, init: object = None) -> str:
    info = InternalMsgInfo(
        True, False, False, Address((-1, b"\0" * 32)), dest, CurrencyCollection(amount), 0, 0, lt, 1
    )
    return b64(MessageAny(info, init, Cell.empty()).serialize())  # type: ignore[arg-type]


def test_balance_above_4_29_ton_and_lt_above_2_32_survive() -> None:
    config = em.Config(load_config().emulator_b64()[0])
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
    config = em.Config(load_config().emulator_b64()[0])
    emu = em.TransactionEmulator(config)
    result = emu.emulate(base64.b64encode(b"junk").decode(), "junk", unixtime=1, lt=1)
    assert not result.success
    emu.close()
    config.close()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_results_are_freed() -> None:
    """Thousands of emulations with ~3 KB JSON results each must not grow the process."""
    config = em.Config(load_config().emulator_b64()[0])
    emu = em.TransactionEmulator(config)
    g = Genesis("leak-test")
    msg = _mint(g.faucet_address, 10**10, 10, g.faucet_state_init)
    none = b64(NONE_SHARD_ACCOUNT)
    for _ in range(500):  # warm up allocator arenas
        emu.emulate(none, msg, unixtime=1_800_000_000, lt=100)
    before = _rss_bytes()
    for _ in range(4000):
        result = emu.emulate(none, msg, unixtime=1_800_000_000, lt=100)
    assert result.success and result.transaction is not None
    size = len(result.transaction) + len(result.shard_account or "")
    grown = _rss_bytes() - before
    # Unfreed, 4000 results would hold about 4000 * size bytes (over 10 MB).
    assert grown < 4000 * size // 4, (grown, size)
    emu.close()
    config.close()


def test_get_method_sees_a_64_bit_balance() -> None:
    """c7's balance is a uint64 argument: a contract reading BALANCE must see all of it."""
    from ton_core import VmStack, begin_cell

    config = em.Config(load_config().emulator_b64()[0])
    code = begin_cell().store_bytes(bytes.fromhex("30F8276F10")).end_cell()  # DROP BALANCE FIRST
    balance = 5 * 10**9 + 123
    result = em.run_get_method(
        config,
        code_b64=b64(code),
        data_b64=b64(begin_cell().end_cell()),
        address="0:" + "11" * 32,
        unixtime=1_800_000_000,
        balance=balance,
        method_id=0,
        stack_b64=b64(VmStack.serialize([])),
    )
    assert result.success and result.vm_exit_code == 0 and result.stack is not None
    assert VmStack.deserialize(cell_from(result.stack).begin_parse()) == [balance]
    config.close()


def test_get_method_sees_the_config() -> None:
    """The shared parsed config reaches c7: CONFIGDICT returns the config dictionary."""
    from ton_core import VmStack, begin_cell

    config = em.Config(load_config().emulator_b64()[0])
    code = begin_cell().store_bytes(bytes.fromhex("30F830")).end_cell()  # DROP CONFIGDICT
    result = em.run_get_method(
        config,
        code_b64=b64(code),
        data_b64=b64(begin_cell().end_cell()),
        address="0:" + "11" * 32,
        unixtime=1_800_000_000,
        balance=1,
        method_id=0,
        stack_b64=b64(VmStack.serialize([])),
    )
    assert result.success and result.stack is not None
    root, key_bits = VmStack.deserialize(cell_from(result.stack).begin_parse())
    assert key_bits == 32
    assert root.hash == cell_from(config.b64).hash
    config.close()
