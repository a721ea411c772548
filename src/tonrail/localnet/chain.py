"""The local TON chain: accounts, an external queue, blocks, and traces run through the TVM.

One basechain shard and a masterchain seqno that advances with every block. Each block takes
queued external messages, runs them with the real transaction emulator and the mainnet config,
and delivers the resulting internal messages in logical-time order until the traces settle
(or until the per-block transaction budget set by the congestion fault runs out).
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ton_core import Address, Cell, ShardAccount, Slice, StateInit
from ton_core.tlb.transaction import MessageAny

from tonrail.localnet import emulator as em
from tonrail.localnet.boc import (
    NONE_SHARD_ACCOUNT,
    b64,
    cell_from,
    external_route,
    message_cells,
    method_id,
    parse_address,
    raw_address,
    trusted_cell,
)
from tonrail.localnet.config import ChainConfig, load_config
from tonrail.localnet.faults import Faults
from tonrail.localnet.genesis import Genesis, Transfer
from tonrail.localnet.libraries import libraries_b64, mainnet_libraries
from tonrail.localnet.store import BlockRow, ChainStore, MsgRow, TxRow
from tonrail.localnet.tx_cells import TxCells

_NONE_SA_B64 = b64(NONE_SHARD_ACCOUNT)
_LT_BLOCK_ALIGN = 1_000_000  # block start lts are aligned like the real validators do


class SendError(Exception):
    """An external message the network refuses (as a liteserver would on sendBoc)."""

    def __init__(
        self, message: str, exit_code: int | None = None, *, malformed: bool = False
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.malformed = malformed  # not a message at all, rather than one refused


@dataclass
class AccountState:
    """An account as toncenter describes it."""

    address: Address
    balance: int
    status: str  # active | uninit | frozen | nonexist
    code: Cell | None
    data: Cell | None
    frozen_hash: bytes | None
    last_lt: int
    last_hash: bytes
    storage_last_paid: int


@dataclass
class _Queued:
    """An accepted external message waiting for a block."""

    msg_hash: bytes
    enqueued_at: float  # monotonic time, for the inclusion delay fault
    cell: Cell
    cell_b64: str


@dataclass(order=True)
class _InFlight:
    """An internal message waiting for its transaction, oldest (created_lt) first."""

    created_lt: int
    seq: int
    cell: Cell = field(compare=False)
    trace_id: bytes = field(compare=False)
    cell_b64: str = field(compare=False)  # serialized once: run by a block, kept in the snapshot


@dataclass(frozen=True)
class FeeEstimate:
    """A transaction's fees split as toncenter's estimateFee reports them."""

    in_fwd_fee: int
    storage_fee: int
    gas_fee: int
    fwd_fee: int
    exit_code: int | None


def _parse_account(address: Address, sa_boc: str | None) -> AccountState:
    if sa_boc is None:
        return AccountState(address, 0, "nonexist", None, None, None, 0, b"\0" * 32, 0)
    sa: Any = ShardAccount.deserialize(cell_from(sa_boc).begin_parse())
    acc: Any = sa.account
    if acc is None:
        return AccountState(
            address, 0, "nonexist", None, None, None, sa.last_trans_lt, sa.last_trans_hash, 0
        )
    state = acc.storage.state
    code = data = frozen = None
    if state.type_ == "account_active":
        status = "active"
        code, data = state.state_init.code, state.state_init.data
    elif state.type_ == "account_frozen":
        status = "frozen"
        frozen = state.state_hash
    else:
        status = "uninit"
    return AccountState(
        address,
        acc.storage.balance.grams,
        status,
        code,
        data,
        frozen,
        sa.last_trans_lt,
        sa.last_trans_hash,
        acc.storage_stat.last_paid,
    )


def _message_route(cell: Cell) -> tuple[bool, str | None, str | None, int, int | None]:
    """(is_internal, src, dest, created_lt, opcode) read straight from a message cell."""
    s = cell.begin_parse()
    if s.load_bit():
        if s.load_bit():  # ext_out_msg_info$11
            src: Any = s.load_address()
            s.load_address()  # dest: addr_extern or none
            created_lt = s.load_uint(64)
            return False, src and raw_address(src), None, created_lt, None
        return False, None, None, 0, None  # ext_in never appears among out messages
    s.skip_bits(3)  # ihr_disabled, bounce, bounced
    src = s.load_address()
    dest: Any = s.load_address()
    s.load_coins()
    s.load_maybe_ref()  # extra currencies
    s.load_coins()
    s.load_coins()
    created_lt = s.load_uint(64)
    s.skip_bits(32)
    opcode = _opcode_after_header(s)
    return True, src and raw_address(src), dest and raw_address(dest), created_lt, opcode


def _opcode_after_header(s: Slice) -> int | None:
    if s.load_bit():  # init present
        if s.load_bit():
            s.load_ref()
        else:
            StateInit.deserialize(s)
    body = s.load_ref().begin_parse() if s.load_bit() else s
    return int(body.load_uint(32)) if body.remaining_bits >= 32 else None


def _is_plain_b64(text: str) -> bool:
    return text.isascii() and "-" not in text and "_" not in text and len(text) % 4 == 0


class Chain:
    """A local TON network. Build it with `Chain.open(...)`; run blocks with `start()`."""

    def __init__(
        self,
        store: ChainStore,
        *,
        config: ChainConfig,
        block_ms: int = 400,
        collate_ms: int | None = None,
        faults: Faults | None = None,
        seed: str = "tonrail-localnet",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if collate_ms is not None and collate_ms <= 0:
            # 0 means "no limit" to the command lines (`serve` maps it to None); here a
            # limit of nothing would make every block a single transaction.
            raise ValueError(f"collate_ms must be more than 0, or None for no limit: {collate_ms}")
        self.store = store
        self.chain_config = config
        self.config_b64 = config.b64  # served as is by getConfigAll / getConfigParam
        emulator_b64, self.config_notes = config.emulator_b64()
        self.config = em.Config(emulator_b64)
        self.block_ms = block_ms
        # How long a timed block may take messages (None: until every queue is empty).
        self.collate_ms = collate_ms
        self.faults = faults or Faults()
        self.genesis = Genesis(seed)
        self._clock = clock
        # Public libraries (as the masterchain holds them): contracts may name code by hash.
        self.libs_b64 = libraries_b64(mainnet_libraries())
        self._emulator = em.TransactionEmulator(self.config, self.libs_b64)
        self._precheck_emulator = em.TransactionEmulator(self.config, self.libs_b64)
        self._precheck_lock = threading.Lock()
        self._accounts: dict[str, str] = {
            a: base64.b64encode(s).decode() for a, s in store.load_accounts().items()
        }
        # Parsed accounts, keyed by address and checked against the BOC they came from, so a
        # reader racing the block thread can never pin a stale parse.
        self._parsed: dict[str, tuple[str | None, AccountState]] = {}
        self._queue: deque[_Queued] = deque()
        self._queued_hashes: set[bytes] = set()
        self._faucet_orders: deque[Transfer] = deque()  # appended by callers, taken by blocks
        self._seq = itertools.count()
        self._in_flight: list[_InFlight] = []
        self._rejected: dict[bytes, str] = {}
        # The block's parse of each transaction of a followed account, for the APIs.
        self.tx_cells = TxCells()
        last = store.last_block()
        self.seqno = last.seqno if last else 0
        self.last_block = last
        self.lt = int(store.get_meta("lt") or 0)
        for item in json.loads(store.get_meta("in_flight") or "[]"):
            heapq.heappush(
                self._in_flight,
                _InFlight(
                    item[0], next(self._seq), cell_from(item[1]), bytes.fromhex(item[2]), item[1]
                ),
            )
        self._block_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._block_event = asyncio.Event()
        self.created_at = self.now()

    # -- construction ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state: str | None = None,
        *,
        block_ms: int = 400,
        collate_ms: int | None = None,
        faults: Faults | None = None,
        seed: str = "tonrail-localnet",
        config_path: str | None = None,
        config: ChainConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Chain:
        """Open (or create with genesis) a chain persisted in `state`; None keeps it in memory.

        The blockchain config is `config`, else the file `config_path`, else the bundled
        mainnet one (`tonrail.localnet.config`). `collate_ms` bounds the time a block of the
        timer takes messages, as a validator's collator must finish on time: what is left
        (the rest of a trace, queued externals) goes into the next block. None: a block runs
        until every queue is empty, whole traces in one block (blocks produced by hand with
        `produce_block()` always do).
        """
        if config is None:
            config = load_config(config_path)
        store = ChainStore(state or ":memory:")
        stored_seed = store.get_meta("seed")
        try:
            chain = cls(
                store,
                config=config,
                block_ms=block_ms,
                collate_ms=collate_ms,
                faults=faults,
                seed=stored_seed or seed,
                clock=clock,
            )
        except BaseException:
            store.close()
            raise
        if stored_seed is None:
            chain._run_genesis()
        return chain

    def _run_genesis(self) -> None:
        g = self.genesis
        self.lt = _LT_BLOCK_ALIGN
        mint = g.genesis_mint(self.lt, self.now())
        heapq.heappush(
            self._in_flight, _InFlight(self.lt, next(self._seq), mint, b"\0" * 32, b64(mint))
        )
        self._produce_block_sync(extra_meta={"seed": g.seed})
        self._faucet_orders.append(g.usdt_deploy_order())
        self._produce_block_sync()
        for w in g.demo_wallets:
            self._faucet_orders.append(Transfer(w.address, w.ton, Cell.empty(), False))
            if w.usdt:
                self._faucet_orders.append(g.usdt_mint_order(w.address, w.usdt))
        self._produce_block_sync()

    # -- time and lifecycle ------------------------------------------------------------

    def now(self) -> int:
        return int(self._clock()) + self.faults.time_offset_s

    async def start(self) -> None:
        """Run the block producer every `block_ms` until `stop()`."""
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._producer(self._stopping))

    async def stop(self) -> None:
        """Stop the producer after the block in progress, so no block is half written."""
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None

    def close(self) -> None:
        self._emulator.close()
        self._precheck_emulator.close()
        self.config.close()
        self.store.close()

    async def _producer(self, stopping: asyncio.Event) -> None:
        # A block starts every block_ms (at once when the last one took longer), as a
        # validator's slots do; a timed block collates for at most collate_ms of it.
        started = time.monotonic()
        while not stopping.is_set():
            wait = max(0.0, started + self.block_ms / 1000 - time.monotonic())
            try:
                async with asyncio.timeout(wait):
                    await stopping.wait()
                return
            except TimeoutError:
                pass
            started = time.monotonic()
            if not self.faults.stall_blocks:
                await self.produce_block(timed=True)

    async def produce_block(self, *, timed: bool = False) -> BlockRow:
        """Produce one block now (tests call this instead of waiting for the timer). A block
        of the timer (`timed`) takes messages for at most `collate_ms`."""
        budget = self.collate_ms if timed else None
        async with self._block_lock:
            block = await asyncio.to_thread(self._produce_block_sync, None, budget)
        self._block_event.set()
        self._block_event = asyncio.Event()
        return block

    async def wait_block(self) -> None:
        """Return after the next block (callers bound it with asyncio.timeout)."""
        await self._block_event.wait()

    # -- accounts and get-methods ------------------------------------------------------

    def account(self, address: Address | str) -> AccountState:
        addr = parse_address(address) if isinstance(address, str) else address
        key = raw_address(addr)
        boc = self._accounts.get(key)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] is boc:
            return cached[1]
        state = _parse_account(addr, boc)
        self._parsed[key] = (boc, state)
        return state

    def run_get_method(
        self, address: Address | str, method: str | int, stack: Cell
    ) -> em.GetMethodResult:
        """Run a get-method on the current state; `stack` is a serialized VmStack."""
        acc = self.account(address)
        if acc.status != "active" or acc.code is None or acc.data is None:
            return em.GetMethodResult(False, -13, 0, None, "account is not active")
        mid = method if isinstance(method, int) else method_id(method)
        return em.run_get_method(
            self.config,
            code_b64=b64(acc.code),
            data_b64=b64(acc.data),
            address=raw_address(acc.address),
            unixtime=self.now(),
            balance=acc.balance,
            method_id=mid,
            stack_b64=b64(stack),
            libs_b64=self.libs_b64,
        )

    # -- sending -----------------------------------------------------------------------

    def send_external(self, boc: str | bytes) -> tuple[bytes, bytes]:
        """Check an external message against the current state and queue it.

        Returns (message hash, normalized hash). Raises SendError if the destination would not
        accept it now, as toncenter's sendBoc does.
        """
        try:
            cell = cell_from(boc)
            dest, norm = external_route(cell)
        except Exception as exc:
            raise SendError(f"failed to parse message BOC: {exc}", malformed=True) from exc
        msg_hash = bytes(cell.hash)
        if msg_hash in self._queued_hashes:
            # A copy of a message still waiting for a block: accepted once already, and a
            # validator's queue holds it once (a copy is not checked again).
            return msg_hash, norm
        cell_b64 = boc if isinstance(boc, str) and _is_plain_b64(boc) else b64(cell)
        with self._precheck_lock:
            result = self._precheck_emulator.emulate(
                self._accounts.get(dest, _NONE_SA_B64),
                cell_b64,
                unixtime=self.now(),
                lt=self.lt + _LT_BLOCK_ALIGN,
            )
        if not result.success:
            raise SendError(
                "cannot apply external message to current state : "
                f"External message was not accepted ({result.error}; "
                f"exit code {result.vm_exit_code})",
                result.vm_exit_code,
            )
        if self.faults.roll(self.faults.drop_external_rate):
            return msg_hash, norm  # lost on its way to a validator: the sender cannot tell
        if msg_hash not in self._queued_hashes:
            self._queued_hashes.add(msg_hash)
            self._queue.append(_Queued(msg_hash, time.monotonic(), cell, cell_b64))
        return msg_hash, norm

    def faucet(self, address: Address | str, amount: int, asset: str = "TON") -> None:
        """Queue a transfer from the genesis faucet: TON in nanoton or USDT in minor units."""
        addr = parse_address(address) if isinstance(address, str) else address
        if amount <= 0:
            raise ValueError("amount must be positive")
        if asset == "TON":
            self._faucet_orders.append(Transfer(addr, amount, Cell.empty(), False))
        elif asset == "USDT":
            self._faucet_orders.append(self.genesis.usdt_mint_order(addr, amount))
        else:
            raise ValueError(f"unknown asset {asset!r}")

    async def fund(self, address: Address | str, amount: int, asset: str = "TON") -> BlockRow:
        """Faucet transfer, settled now: queue it and produce a block (used by demo setups)."""
        self.faucet(address, amount, asset)
        return await self.produce_block()

    def queue_size(self) -> int:
        return len(self._queue) + len(self._in_flight) + len(self._faucet_orders)

    def rejected_reason(self, msg_hash: bytes) -> str | None:
        return self._rejected.get(msg_hash)

    # -- fee estimation ----------------------------------------------------------------

    def estimate_fee(self, message: Cell, *, ignore_chksig: bool = True) -> FeeEstimate:
        """Emulate an external message on the current state and split its fees like toncenter."""
        from ton_core import Transaction

        msg = MessageAny.deserialize(message.begin_parse())
        dest = raw_address(msg.info.dest)
        with self._precheck_lock:
            result = self._precheck_emulator.emulate(
                self._accounts.get(dest, _NONE_SA_B64),
                b64(message),
                unixtime=self.now(),
                lt=self.lt + _LT_BLOCK_ALIGN,
                ignore_chksig=ignore_chksig,
            )
        if not result.success or result.transaction is None:
            raise SendError(
                f"cannot estimate: external message not accepted ({result.error})",
                result.vm_exit_code,
            )
        tx: Any = Transaction.deserialize(cell_from(result.transaction).begin_parse())
        d: Any = tx.description
        storage = d.storage_ph.storage_fees_collected if d.storage_ph else 0
        gas = d.compute_ph.gas_fees or 0 if d.compute_ph.type_ == "vm" else 0
        action_fees = (d.action.total_action_fees or 0) if d.action else 0
        fwd = (d.action.total_fwd_fees or 0) if d.action else 0
        in_fwd = tx.total_fees.grams - storage - gas - action_fees
        return FeeEstimate(in_fwd, storage, gas, fwd, d.compute_ph.exit_code)

    # -- block production --------------------------------------------------------------

    def _take_externals(self, budget: int) -> list[_Queued]:
        delay = self.faults.inclusion_delay_ms / 1000
        cutoff = time.monotonic() - delay
        taken: list[_Queued] = []
        while self._queue and len(taken) < budget and self._queue[0].enqueued_at <= cutoff:
            # Its hash stays in `_queued_hashes` until the block that runs it is written
            # (`_produce_block_sync`): a copy sent meanwhile is the same waiting message.
            taken.append(self._queue.popleft())
        return taken

    def _faucet_seqno(self) -> int:
        data = self.account(self.genesis.faucet_address).data
        if data is None:
            raise RuntimeError("faucet wallet is not active")
        return int(data.begin_parse().load_uint(32))

    def _produce_block_sync(
        self, extra_meta: dict[str, str] | None = None, collate_ms: int | None = None
    ) -> BlockRow:
        running: list[bytes] = []  # the externals this block takes
        try:
            return self._make_block(extra_meta, collate_ms, running)
        finally:
            # Written (or failed): a copy of one of them is checked as a new message again.
            self._queued_hashes.difference_update(running)

    def _make_block(
        self, extra_meta: dict[str, str] | None, collate_ms: int | None, running: list[bytes]
    ) -> BlockRow:
        now = self.now()
        started = time.monotonic()
        seqno = self.seqno + 1
        self.lt = -(-self.lt // _LT_BLOCK_ALIGN) * _LT_BLOCK_ALIGN
        start_lt = self.lt
        limit = self.faults.max_tx_per_block or 1 << 62
        txs: list[TxRow] = []
        msgs: list[MsgRow] = []
        changed: dict[str, str] = {}

        def run(
            cell: Cell, trace_id: bytes | None, external: bool, cell_b64: str | None = None
        ) -> None:
            self._apply(
                cell, cell_b64 or b64(cell), trace_id, external, now, seqno, txs, msgs, changed
            )

        def room(share: float) -> bool:
            # A collator stops taking messages at its limit or when its share of the time is
            # up; what is left waits for the next block (a block takes at least one message).
            if len(txs) >= limit:
                return False
            if collate_ms is None or not txs:
                return True
            return time.monotonic() - started < share * collate_ms / 1000

        def drain(share: float) -> None:
            while self._in_flight and room(share):
                item = heapq.heappop(self._in_flight)
                run(item.cell, item.trace_id, False, item.cell_b64)

        # As ton's collator (validator/impl/collator.cpp): the message queue until half the
        # time, externals until three quarters, then the new messages until the end.
        drain(0.5)
        while room(0.75) and (taken := self._take_externals(1)):
            running.append(taken[0].msg_hash)
            run(taken[0].cell, None, True, taken[0].cell_b64)
        while self._faucet_orders and room(0.75):
            orders = [
                self._faucet_orders.popleft() for _ in range(min(4, len(self._faucet_orders)))
            ]
            run(self.genesis.faucet_external(self._faucet_seqno(), orders, now), None, True)
        drain(1.0)

        block = BlockRow(seqno, now, start_lt, self.lt, len(txs))
        meta = {
            "lt": str(self.lt),
            "in_flight": json.dumps(
                [[i.created_lt, i.cell_b64, i.trace_id.hex()] for i in self._in_flight]
            ),
            **(extra_meta or {}),
        }
        self.store.write_block(
            block, {a: base64.b64decode(s) for a, s in changed.items()}, txs, msgs, meta
        )
        self.seqno = seqno
        self.last_block = block
        return block

    def _apply(
        self,
        cell: Cell,
        cell_b64: str,
        trace_id: bytes | None,
        external: bool,
        now: int,
        seqno: int,
        txs: list[TxRow],
        msgs: list[MsgRow],
        changed: dict[str, str],
    ) -> None:
        _, src, dest, created_lt, opcode = _message_route(cell)
        msg_hash = bytes(cell.hash)
        norm: bytes | None = None
        if external:
            dest, norm = external_route(cell)
            opcode = _opcode_after_header(self._skip_ext_header(cell))
        assert dest is not None
        result = self._emulator.emulate(
            self._accounts.get(dest, _NONE_SA_B64), cell_b64, unixtime=now, lt=self.lt
        )
        if not result.success or result.transaction is None or result.shard_account is None:
            # An external no longer accepted (replayed, expired, bad signature): no transaction.
            self._rejected[msg_hash] = f"{result.error} (exit code {result.vm_exit_code})"
            if len(self._rejected) > 10_000:  # a bounded memory of recent rejections
                self._rejected.pop(next(iter(self._rejected)))
            return
        boc = base64.b64decode(result.transaction)
        tx_cell = trusted_cell(boc)
        ts = tx_cell.begin_parse()
        ts.skip_bits(4 + 256)
        lt = int(ts.load_uint(64))
        ts.skip_bits(256 + 64 + 32)
        outmsg_cnt = int(ts.load_uint(15))
        self.lt = lt + outmsg_cnt + 1
        tx_hash = bytes(tx_cell.hash)
        trace = trace_id if trace_id is not None and any(trace_id) else tx_hash
        self._accounts[dest] = result.shard_account
        changed[dest] = result.shard_account
        self.tx_cells.keep(dest, tx_hash, tx_cell, len(boc))
        txs.append(TxRow(tx_hash, dest, lt, now, seqno, trace, msg_hash, boc))
        msgs.append(MsgRow(msg_hash, norm, "in", tx_hash, src, dest, created_lt, opcode))
        if outmsg_cnt:
            _, outs = message_cells(tx_cell)
            for out in outs:
                o_int, o_src, o_dest, o_lt, o_op = _message_route(out)
                msgs.append(
                    MsgRow(bytes(out.hash), None, "out", tx_hash, o_src, o_dest, o_lt, o_op)
                )
                if o_int:
                    heapq.heappush(
                        self._in_flight, _InFlight(o_lt, next(self._seq), out, trace, b64(out))
                    )

    @staticmethod
    def _skip_ext_header(cell: Cell) -> Slice:
        s = cell.begin_parse()
        s.skip_bits(2)
        s.load_address()
        s.load_address()
        s.load_coins()
        return s
