"""The blockchain config is a file: formats, the bundled mainnet one, fees that follow it, the
emulator's param-43 adaptation, and `--config-from` mirroring a toncenter endpoint (our own)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey
from ton_core import Address, Cell, Transaction
from typer.testing import CliRunner

from tonrail.localnet import emulator as em
from tonrail.localnet.boc import NONE_SHARD_ACCOUNT, b64, cell_from
from tonrail.localnet.chain import Chain
from tonrail.localnet.config import (
    BUNDLED,
    ConfigError,
    build_config,
    describe,
    fee_summary,
    fetch_config,
    for_emulator,
    load_config,
    parse_params,
    resolve_config,
)
from tonrail.localnet.genesis import TON, Genesis

from .wallets import V4Wallet

NOW = 1_800_000_000
DOCS = Path(__file__).resolve().parents[2] / "docs" / "LOCALNET.md"
# npm @ton/sandbox 0.41.0's config, vendored by `make assets` (the 2025 prices).
NPM_CONFIG = str(Path(em.__file__).resolve().parents[1] / "vendor" / "ton-sandbox-config.js")


def _root_hash(config_b64: str) -> bytes:
    return bytes(cell_from(config_b64).hash)


def test_bundled_config_is_the_one_the_docs_date() -> None:
    config = load_config()
    assert config.source == str(BUNDLED)
    seqno = config.meta["masterchain_seqno"]
    since = config.validators_since()
    assert since is not None
    docs = DOCS.read_text()
    # The docs name the block and the validator round the shipped config was read at.
    assert f"masterchain block {seqno}" in docs
    assert since.strftime("%Y-%m-%d") in docs
    summary = fee_summary(config)
    # The April 2026 cut is in: basechain gas and forwarding are below the 2025 prices.
    assert summary["gas_basechain"]["gas_price"] < 26_214_400  # 400 nanoton/gas before
    assert summary["fwd_basechain"]["lump_price"] < 400_000


@pytest.mark.parametrize("kind", ["ours", "toncenter", "sandbox_js", "binary", "base64"])
def test_every_file_format_loads_the_same_config(tmp_path: Path, kind: str) -> None:
    bundled = load_config()
    text = bundled.b64
    file = tmp_path / f"config.{kind}"
    if kind == "ours":
        bundled.save(file)
    elif kind == "toncenter":
        answer = {"ok": True, "result": {"@type": "configInfo", "config": {"bytes": text}}}
        file.write_text(json.dumps(answer))
    elif kind == "sandbox_js":
        wrapped = re.sub(r"(.{76})", r"\1\n", text)  # line breaks inside the literal are fine
        file.write_text(f"exports.defaultConfigSeqno = 42;\nexports.defaultConfig = `{wrapped}`;")
    elif kind == "binary":
        file.write_bytes(base64.b64decode(text))
    else:
        file.write_text(text + "\n")
    loaded = load_config(file)
    assert _root_hash(loaded.b64) == _root_hash(text)
    if kind == "ours":
        assert loaded.meta["masterchain_seqno"] == bundled.meta["masterchain_seqno"]
    if kind == "sandbox_js":
        assert loaded.meta["masterchain_seqno"] == 42


def test_bad_config_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.json")
    junk = tmp_path / "junk.js"
    junk.write_text("exports.somethingElse = 1;")
    with pytest.raises(ConfigError, match="not a config BOC"):
        load_config(junk)
    no_field = tmp_path / "nofield.json"
    no_field.write_text('{"ok": true}')
    with pytest.raises(ConfigError, match="without a `config` field"):
        load_config(no_field)
    params = parse_params(load_config().b64)
    del params[21]
    partial = tmp_path / "partial.boc"
    partial.write_text(build_config(params))
    with pytest.raises(ConfigError, match=r"lacks params \[21\]"):
        load_config(partial)
    with pytest.raises(ConfigError):
        Chain.open(None, config_path=str(junk))


def test_cli_reports_a_bad_config_file(tmp_path: Path) -> None:
    from tonrail.cli import app

    result = CliRunner().invoke(app, ["localnet", "--config", str(tmp_path / "absent.json")])
    assert result.exit_code == 2
    assert "cannot read config file" in result.output


def _genesis_mint_on(config_b64: str) -> em.TxResult:
    config = em.Config(config_b64)
    emulator = em.TransactionEmulator(config)
    try:
        mint = Genesis("tonrail-localnet").genesis_mint(1_000_000, NOW)
        return emulator.emulate(b64(NONE_SHARD_ACCOUNT), b64(mint), unixtime=NOW, lt=1_000_000)
    finally:
        emulator.close()
        config.close()


def test_param_43_is_rewritten_only_for_the_emulator() -> None:
    mainnet = load_config()
    raw = mainnet.params[43].begin_parse()
    assert raw.remaining_bits > 8 + 288  # mainnet's layout: longer than the build's v2
    refused = _genesis_mint_on(mainnet.b64)
    assert not refused.success and "parameter 43" in str(refused.error)
    adapted, notes = for_emulator(mainnet.b64)
    assert notes and "param 43" in notes[0]
    assert _genesis_mint_on(adapted).success
    old = parse_params(adapted)[43].begin_parse()
    assert old.remaining_bits == 8 + 288
    raw.skip_bits(8)
    old.skip_bits(8)
    # msg bits, msg cells, library cells, data depth, ext size, ext depth, account cells:
    for bits in (32, 32, 32, 16, 32, 16, 32):  # mainnet's values survive where both have them
        assert old.load_uint(bits) == raw.load_uint(bits)
    # Every other param reaches the emulator untouched; the API serves mainnet's bytes.
    a, b = parse_params(adapted), mainnet.params
    assert {k: bytes(v.hash) for k, v in a.items() if k != 43} == {
        k: bytes(v.hash) for k, v in b.items() if k != 43
    }
    chain = Chain.open(None)
    try:
        assert chain.config_b64 == mainnet.b64
        assert chain.config_notes == notes
    finally:
        chain.close()
    params = dict(mainnet.params)
    del params[43]
    unchanged = build_config(params)
    assert for_emulator(unchanged) == (unchanged, [])


# -- fees follow the config --------------------------------------------------------------


def _msg_size(root: Cell) -> tuple[int, int]:
    """(cells, bits) of a message as forwarding fees count it: distinct cells below the root."""
    seen: set[bytes] = set()
    cells = bits = 0
    stack = list(root.refs)
    while stack:
        c = stack.pop()
        h = bytes(c.hash)
        if h in seen:
            continue
        seen.add(h)
        cells += 1
        bits += len(c.bits)
        stack.extend(c.refs)
    return cells, bits


def _fwd_fee(prices: dict[str, int], cells: int, bits: int) -> int:
    return prices["lump_price"] + (
        (prices["bit_price"] * bits + prices["cell_price"] * cells + 0xFFFF) >> 16
    )


def _gas_fee(prices: dict[str, int], gas_used: int) -> int:
    if gas_used <= prices["flat_gas_limit"]:
        return prices["flat_gas_price"]
    over = gas_used - prices["flat_gas_limit"]
    return prices["flat_gas_price"] + ((prices["gas_price"] * over + 0xFFFF) >> 16)


async def _transfer_fees(config_path: str | None) -> tuple[dict[str, Any], Any, Cell, int]:
    chain = Chain.open(None, config_path=config_path, clock=lambda: NOW)
    try:
        w = V4Wallet(SigningKey(b"\x31" * 32))
        chain.faucet(w.address, 10 * TON)
        await chain.produce_block()
        chain.send_external(b64(w.external(w.body(0, NOW + 60, w.address, 1), deploy=True)))
        await chain.produce_block()
        ext = w.external(w.body(1, NOW + 60, Address((0, b"\x12" * 32)), TON))
        estimate = chain.estimate_fee(ext, ignore_chksig=False)
        chain.send_external(b64(ext))
        await chain.produce_block()
        row = chain.store.account_transactions(w.address.to_str(False), limit=1)[0]
        tx: Any = Transaction.deserialize(Cell.one_from_boc(row.boc).begin_parse())
        total = estimate.in_fwd_fee + estimate.storage_fee + estimate.gas_fee + estimate.fwd_fee
        return fee_summary(chain.chain_config), tx, ext, total
    finally:
        chain.close()


@pytest.mark.parametrize("which", ["bundled", "npm"])
async def test_transfer_fees_are_the_configs_formulas(which: str) -> None:
    summary, tx, ext, estimated = await _transfer_fees(NPM_CONFIG if which == "npm" else None)
    gas, fwd = summary["gas_basechain"], summary["fwd_basechain"]
    d = tx.description
    assert d.compute_ph.gas_fees == _gas_fee(gas, d.compute_ph.gas_used)
    (out,) = tx.out_msgs
    cells, bits = _msg_size(out.serialize())
    fwd_fee = _fwd_fee(fwd, cells, bits)
    assert d.action.total_fwd_fees == fwd_fee
    assert d.action.total_action_fees == (fwd_fee * fwd["first_frac"]) >> 16
    assert out.info.fwd_fee == fwd_fee - d.action.total_action_fees
    in_fwd = _fwd_fee(fwd, *_msg_size(ext))
    storage = d.storage_ph.storage_fees_collected if d.storage_ph else 0
    assert tx.total_fees.grams == in_fwd + storage + d.compute_ph.gas_fees + (
        d.action.total_action_fees
    )
    assert estimated == tx.total_fees.grams + out.info.fwd_fee  # what estimateFee predicted


async def test_the_2026_config_makes_a_transfer_cheaper() -> None:
    new = (await _transfer_fees(None))[1].total_fees.grams
    old = (await _transfer_fees(NPM_CONFIG))[1].total_fees.grams
    assert new < old


# -- mirroring a toncenter endpoint: our own network's, offline --------------------------


async def test_config_from_mirrors_getconfigall(server: str, chain: Chain, tmp_path: Path) -> None:
    mirrored = await asyncio.to_thread(fetch_config, f"{server}/api/v2")
    assert mirrored.b64 == chain.config_b64
    assert 1 <= mirrored.meta["masterchain_seqno"] <= chain.seqno
    assert mirrored.meta["fetched_from"] == f"{server}/api/v2"
    target = tmp_path / "var" / "mainnet.json"
    saved = await asyncio.to_thread(resolve_config, str(target), f"{server}/api/v2/?api_key=k")
    assert saved.b64 == chain.config_b64
    assert "api_key" not in target.read_text()  # a key in the URL is not written down
    assert "api_key" not in saved.source and "api_key" not in describe(saved)  # nor logged
    again = load_config(target)  # the next start, offline
    assert again.b64 == chain.config_b64
    assert again.meta["masterchain_seqno"] == saved.meta["masterchain_seqno"]
    reopened = Chain.open(None, config=again)
    try:
        assert reopened.config_b64 == chain.config_b64
    finally:
        reopened.close()


async def test_config_from_one_param_at_a_time(server: str, chain: Chain) -> None:
    mirrored = await asyncio.to_thread(fetch_config, f"{server}/api/v2", method="params")
    want = {k: bytes(v.hash) for k, v in parse_params(chain.config_b64).items() if k >= 0}
    got = {k: bytes(v.hash) for k, v in mirrored.params.items()}
    assert got == want  # getConfigParam has no negative ids: those come with getConfigAll only
    again = Chain.open(None, config=mirrored)  # and a network runs on it: genesis made 3 blocks
    try:
        assert again.seqno == 3
    finally:
        again.close()


async def test_config_from_refuses_what_is_not_toncenter(server: str) -> None:
    with pytest.raises(ConfigError, match="getConfigAll"):
        await asyncio.to_thread(fetch_config, f"{server}/localnet", method="all", retries=0)
    with pytest.raises(ConfigError):
        await asyncio.to_thread(fetch_config, "http://127.0.0.1:9/api/v2", timeout=2)
