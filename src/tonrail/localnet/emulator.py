"""A small ctypes binding over the TON `libemulator` shipped in the `pytvm` wheel.

Only what the local network needs: transaction emulation and get-methods. All BOCs cross the
boundary as base64 strings; every JSON string the library returns is freed after reading.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LIB_NAME = "libemulator-linux-x86_64.so"


class EmulatorError(RuntimeError):
    """The emulator library refused an input or returned an unreadable result."""


def library_path() -> Path:
    """Locate the shared library inside the installed pytvm package without importing it."""
    spec = importlib.util.find_spec("pytvm")
    if spec is None or not spec.submodule_search_locations:
        raise EmulatorError("pytvm is not installed: it ships libemulator")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "engine" / _LIB_NAME
        if candidate.exists():
            return candidate
    raise EmulatorError(f"{_LIB_NAME} not found in pytvm")


class _Library:
    """The loaded library with every signature declared once (64-bit where the C API is)."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        vp, cp, u32, u64, i64 = (
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_uint32,
            ctypes.c_uint64,
            ctypes.c_int64,
        )
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "emulator_set_verbosity_level": (ctypes.c_bool, [ctypes.c_int]),
            "emulator_config_create": (vp, [cp]),
            "emulator_config_destroy": (None, [vp]),
            "transaction_emulator_create": (vp, [cp, ctypes.c_int]),
            "transaction_emulator_destroy": (None, [vp]),
            "transaction_emulator_set_unixtime": (ctypes.c_bool, [vp, u32]),
            "transaction_emulator_set_lt": (ctypes.c_bool, [vp, u64]),
            "transaction_emulator_set_rand_seed": (ctypes.c_bool, [vp, cp]),
            "transaction_emulator_set_ignore_chksig": (ctypes.c_bool, [vp, ctypes.c_bool]),
            "transaction_emulator_set_config_object": (ctypes.c_bool, [vp, vp]),
            "transaction_emulator_set_libs": (ctypes.c_bool, [vp, cp]),
            # Results are strdup'ed by the library: take them as raw pointers to free them.
            "transaction_emulator_emulate_transaction": (vp, [vp, cp, cp]),
            "tvm_emulator_create": (vp, [cp, cp, ctypes.c_int]),
            "tvm_emulator_destroy": (None, [vp]),
            "tvm_emulator_set_c7": (ctypes.c_bool, [vp, cp, u32, u64, cp, cp]),
            "tvm_emulator_set_config_object": (ctypes.c_bool, [vp, vp]),
            "tvm_emulator_set_libraries": (ctypes.c_bool, [vp, cp]),
            "tvm_emulator_set_gas_limit": (ctypes.c_bool, [vp, i64]),
            "tvm_emulator_run_get_method": (vp, [vp, ctypes.c_int, cp]),
        }
        for name, (restype, argtypes) in sigs.items():
            func = getattr(lib, name)
            func.restype = restype
            func.argtypes = argtypes
        # This build exports no string_destroy: its results come from strdup, so libc frees them.
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.free.restype = None
        libc.free.argtypes = [vp]
        self.lib = lib
        self.free = libc.free
        lib.emulator_set_verbosity_level(0)

    def take_json(self, ptr: int | None) -> dict[str, Any]:
        """Read a JSON result and free it; a NULL means the library rejected its input."""
        if not ptr:
            raise EmulatorError("emulator returned NULL (invalid input BOC?)")
        try:
            raw = ctypes.string_at(ptr)
        finally:
            self.free(ptr)
        result: dict[str, Any] = json.loads(raw)
        return result


_lib_lock = threading.Lock()
_lib: _Library | None = None


def _library() -> _Library:
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _Library(library_path())
        return _lib


@dataclass(frozen=True)
class TxResult:
    """Outcome of one emulated transaction."""

    success: bool
    transaction: str | None  # base64 BOC of the Transaction
    shard_account: str | None  # base64 BOC of the new ShardAccount
    error: str | None
    external_not_accepted: bool
    vm_exit_code: int | None


@dataclass(frozen=True)
class GetMethodResult:
    """Outcome of one get-method run: the resulting stack as a base64 BOC."""

    success: bool
    vm_exit_code: int
    gas_used: int
    stack: str | None
    error: str | None


class Config:
    """A parsed blockchain config, shared by emulators (parsing it costs milliseconds)."""

    def __init__(self, config_b64: str) -> None:
        self._l = _library()
        self.b64 = config_b64
        self.ptr = self._l.lib.emulator_config_create(config_b64.encode())
        if not self.ptr:
            raise EmulatorError("invalid config BOC")

    def close(self) -> None:
        if self.ptr:
            self._l.lib.emulator_config_destroy(self.ptr)
            self.ptr = None


class TransactionEmulator:
    """Runs one message against one ShardAccount with the given config, time and lt."""

    def __init__(self, config: Config, libs_b64: str | None = None) -> None:
        self._l = _library()
        self._config = config
        self.ptr = self._l.lib.transaction_emulator_create(config.b64.encode(), 0)
        if not self.ptr:
            raise EmulatorError("transaction_emulator_create failed")
        if libs_b64:
            self._l.lib.transaction_emulator_set_libs(self.ptr, libs_b64.encode())

    def close(self) -> None:
        if self.ptr:
            self._l.lib.transaction_emulator_destroy(self.ptr)
            self.ptr = None

    def emulate(
        self,
        shard_account_b64: str,
        message_b64: str,
        *,
        unixtime: int,
        lt: int,
        rand_seed_hex: str | None = None,
        ignore_chksig: bool = False,
    ) -> TxResult:
        lib = self._l.lib
        if not lib.transaction_emulator_set_unixtime(self.ptr, unixtime):
            raise EmulatorError("set_unixtime failed")
        if not lib.transaction_emulator_set_lt(self.ptr, lt):
            raise EmulatorError("set_lt failed")
        if rand_seed_hex and not lib.transaction_emulator_set_rand_seed(
            self.ptr, rand_seed_hex.encode()
        ):
            raise EmulatorError("set_rand_seed failed")
        lib.transaction_emulator_set_ignore_chksig(self.ptr, ignore_chksig)
        out = self._l.take_json(
            lib.transaction_emulator_emulate_transaction(
                self.ptr, shard_account_b64.encode(), message_b64.encode()
            )
        )
        if out.get("success"):
            return TxResult(True, out["transaction"], out["shard_account"], None, False, None)
        exit_code = out.get("vm_exit_code")
        return TxResult(
            False,
            None,
            None,
            str(out.get("error", "")),
            bool(out.get("external_not_accepted", False)),
            int(exit_code) if exit_code is not None else None,
        )


def run_get_method(
    config: Config,
    *,
    code_b64: str,
    data_b64: str,
    address: str,
    unixtime: int,
    balance: int,
    method_id: int,
    stack_b64: str,
    rand_seed_hex: str = "00" * 32,
    gas_limit: int = 10_000_000,
    libs_b64: str | None = None,
) -> GetMethodResult:
    """Run a get-method on a contract's code and data (address in raw `wc:hex` form)."""
    lib = _library()
    ptr = lib.lib.tvm_emulator_create(code_b64.encode(), data_b64.encode(), 0)
    if not ptr:
        raise EmulatorError("tvm_emulator_create failed (bad code/data BOC)")
    try:
        # No config BOC here: re-parsing it costs milliseconds a call; the parsed one is shared.
        if not lib.lib.tvm_emulator_set_c7(
            ptr, address.encode(), unixtime, balance, rand_seed_hex.encode(), None
        ):
            raise EmulatorError("tvm_emulator_set_c7 failed")
        if not lib.lib.tvm_emulator_set_config_object(ptr, config.ptr):
            raise EmulatorError("tvm_emulator_set_config_object failed")
        if libs_b64:
            lib.lib.tvm_emulator_set_libraries(ptr, libs_b64.encode())
        lib.lib.tvm_emulator_set_gas_limit(ptr, gas_limit)
        out = lib.take_json(lib.lib.tvm_emulator_run_get_method(ptr, method_id, stack_b64.encode()))
    finally:
        lib.lib.tvm_emulator_destroy(ptr)
    if not out.get("success"):
        return GetMethodResult(False, -1, 0, None, str(out.get("error", "")))
    return GetMethodResult(
        True,
        int(out.get("vm_exit_code", 0)),
        int(out.get("gas_used", 0)),
        out.get("stack"),
        None,
    )
