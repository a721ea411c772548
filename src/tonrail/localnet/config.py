"""The blockchain configuration the local network runs with: a file, read at start.

The bundled file is mainnet's config (`mainnet-config.json` beside this module); `--config FILE`
names another, and `fetch_config(URL)` mirrors a toncenter endpoint's (`getConfigAll`, else one
`getConfigParam` per param). Files may be our JSON (`{"config": base64, ...}` plus where it came
from), a toncenter `getConfigAll` answer, @ton/sandbox's `defaultConfig.js`, a base64 BOC or a
binary BOC.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ton_core import Cell, HashMap, begin_cell

from tonrail.localnet.boc import cell_from
from tonrail.localnet.fast_boc import BOC_MAGIC

BUNDLED = Path(__file__).with_name("mainnet-config.json")
# What the transaction emulator cannot run without (version, workchains, storage, gas, forwarding).
REQUIRED_PARAMS = (8, 12, 18, 20, 21, 24, 25)


class ConfigError(ValueError):
    """A config file or endpoint that does not hold a usable blockchain config."""


def parse_params(config_b64: str) -> dict[int, Cell]:
    """The config dictionary (HashmapE 32 ^Cell) as {param id: cell}."""
    root = cell_from(config_b64)
    parsed: Any = HashMap.parse(root.begin_parse(), 32, value_deserializer=lambda s: s.load_ref())
    return {_signed32(int(k)): v for k, v in (parsed or {}).items()}


def _signed32(key: int) -> int:
    return key - (1 << 32) if key >= 1 << 31 else key


def build_config(params: dict[int, Cell]) -> str:
    """The config dictionary of `params` as a base64 BOC (what getConfigAll answers)."""
    hm = HashMap(32, value_serializer=lambda v, b: b.store_ref(v))
    for key, cell in params.items():
        hm.set_int_key(key % (1 << 32), cell)
    root = hm.serialize()
    if root is None:
        raise ConfigError("an empty config")
    return base64.b64encode(root.to_boc()).decode()


def _size_limits_for_emulator(cell: Cell) -> Cell | None:
    """Param 43 in the layout the shipped emulator (2024-08-09) reads, or None if it reads it.

    That build knows `size_limits_config_v2#02` with ten fields, the 8th being
    `max_acc_state_bits`; mainnet's 2025+ layout (same tag) replaced it with
    `max_mc_acc_state_cells` and appended five fields, and v3 (#03) two more. The build refuses
    the whole config then ("configuration parameter 43 is invalid"). The fields both layouts
    share keep mainnet's values; `max_acc_state_bits` gets the build's own default.
    """
    s = cell.begin_parse()
    tag = int(s.load_uint(8))
    if tag == 1 or (tag == 2 and s.remaining_bits == 288):  # v1, or v2 as that build knows it
        return None
    if tag not in (2, 3):
        raise ConfigError(f"param 43: unknown SizeLimitsConfig tag {tag}")
    fields = [
        (int(s.load_uint(32)), 32),  # max_msg_bits
        (int(s.load_uint(32)), 32),  # max_msg_cells
        (int(s.load_uint(32)), 32),  # max_library_cells
        (int(s.load_uint(16)), 16),  # max_vm_data_depth
        (int(s.load_uint(32)), 32),  # max_ext_msg_size
        (int(s.load_uint(16)), 16),  # max_ext_msg_depth
        (int(s.load_uint(32)), 32),  # max_acc_state_cells
    ]
    s.skip_bits(32)  # max_mc_acc_state_cells (no such field in the old layout)
    public_libraries = int(s.load_uint(32))
    defer_limit = int(s.load_uint(32))
    b = begin_cell().store_uint(2, 8)
    for value, bits in fields:
        b.store_uint(value, bits)
    b.store_uint((1 << 16) * 1023, 32)  # max_acc_state_bits: the build's default
    b.store_uint(public_libraries, 32).store_uint(defer_limit, 32)
    return b.end_cell()


def for_emulator(config_b64: str) -> tuple[str, list[str]]:
    """The config as the shipped emulator can read it, and what was changed (usually nothing)."""
    params = parse_params(config_b64)
    notes: list[str] = []
    p43 = params.get(43)
    if p43 is not None:
        old = _size_limits_for_emulator(p43)
        if old is not None:
            params[43] = old
            notes.append(
                "param 43 (size limits) rewritten to the emulator's older layout: the limits on "
                "extra currencies, fixed prefix length, storage-dict cells, library loads and "
                "masterchain account cells are not enforced"
            )
    if not notes:
        return config_b64, notes
    return build_config(params), notes


@dataclass(frozen=True)
class ChainConfig:
    """A loaded config: what the APIs serve (`b64`) and what the emulator runs (`emulator_b64`)."""

    b64: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_b64(
        cls, config_b64: str, source: str, meta: dict[str, Any] | None = None
    ) -> ChainConfig:
        config_b64 = re.sub(r"\s+", "", config_b64)
        try:
            params = parse_params(config_b64)
        except Exception as exc:
            raise ConfigError(f"{source}: not a config BOC ({exc})") from exc
        missing = [p for p in REQUIRED_PARAMS if p not in params]
        if missing:
            raise ConfigError(f"{source}: config lacks params {missing}")
        return cls(config_b64, source, dict(meta or {}))

    @property
    def params(self) -> dict[int, Cell]:
        return parse_params(self.b64)

    def emulator_b64(self) -> tuple[str, list[str]]:
        return for_emulator(self.b64)

    def validators_since(self) -> datetime | None:
        """Start of the validator round in param 34: the config is at least this recent."""
        cell = self.params.get(34)
        if cell is None:
            return None
        s = cell.begin_parse()
        s.skip_bits(8)  # validators#11 / validators_ext#12
        return datetime.fromtimestamp(int(s.load_uint(32)), UTC)

    def to_json(self) -> dict[str, Any]:
        since = self.validators_since()
        return {
            **self.meta,
            "validators_since": since.isoformat() if since else None,
            "config": self.b64,
        }

    def save(self, path: str | Path) -> None:
        out = {k: v for k, v in self.to_json().items() if k != "validators_since"}
        Path(path).write_text(json.dumps(out, indent=1) + "\n")


def _from_json(doc: Any, source: str) -> ChainConfig:
    if isinstance(doc, dict) and isinstance(doc.get("result"), dict):  # toncenter's answer
        doc = doc["result"]
    if not isinstance(doc, dict) or "config" not in doc:
        raise ConfigError(f"{source}: JSON without a `config` field")
    value = doc["config"]
    if isinstance(value, dict):  # {"@type": "tvm.cell", "bytes": ...}
        value = value.get("bytes")
    if not isinstance(value, str):
        raise ConfigError(f"{source}: `config` is not a base64 BOC")
    meta = {k: v for k, v in doc.items() if k not in ("config", "@type", "@extra")}
    return ChainConfig.from_b64(value, source, meta)


def parse_config_file(data: bytes, source: str) -> ChainConfig:
    """A config from any of the formats the module docstring lists."""
    if data.startswith(BOC_MAGIC):
        return ChainConfig.from_b64(base64.b64encode(data).decode(), source)
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: neither a BOC nor text") from exc
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return _from_json(json.loads(stripped), source)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: invalid JSON ({exc})") from exc
    match = re.search(r"defaultConfig\s*=\s*[`'\"]([A-Za-z0-9+/=\s]+)[`'\"]", text)
    if match is not None:  # @ton/sandbox's dist/config/defaultConfig.js
        seqno = re.search(r"defaultConfigSeqno\s*=\s*(\d+)", text)
        meta = {"masterchain_seqno": int(seqno.group(1))} if seqno else {}
        return ChainConfig.from_b64(match.group(1), source, meta)
    return ChainConfig.from_b64(stripped, source)


def load_config(path: str | Path | None = None) -> ChainConfig:
    """The config in `path`, or the bundled mainnet one."""
    file = Path(path) if path is not None else BUNDLED
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from exc
    return parse_config_file(data, str(file))


# -- mirroring a toncenter endpoint ------------------------------------------------------


def _method_url(base: str, method: str) -> str:
    """`base` is a v2 root (`https://host/api/v2`, query such as `api_key` kept)."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/")
    for suffix in ("/getConfigAll", "/jsonRPC"):
        path = path.removesuffix(suffix)
    return urlunsplit((parts.scheme, parts.netloc, f"{path}/{method}", parts.query, ""))


def fetch_config(
    url: str,
    *,
    method: str = "auto",
    timeout: float = 30.0,
    retries: int = 5,
    api_key: str | None = None,
) -> ChainConfig:
    """A toncenter v2 endpoint's current config: `getConfigAll`, or with `method="params"` (and
    by itself when the endpoint has no getConfigAll) one `getConfigParam` for every
    non-negative param id of the bundled config. 429s are retried after a pause, up to
    `retries` times a request.
    """
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}

    def call(client: httpx.Client, name: str, params: dict[str, Any]) -> Any:
        for attempt in range(retries + 1):
            try:
                response = client.get(_method_url(url, name), params=params)
            except httpx.HTTPError as exc:
                raise ConfigError(f"{url}: {name} failed: {exc}") from exc
            if response.status_code == 429 and attempt < retries:
                time.sleep(1.1 * (attempt + 1))  # toncenter's keyless limit is one request/s
                continue
            try:
                body = response.json()
            except ValueError:
                body = None
            if response.status_code != 200 or not isinstance(body, dict) or not body.get("ok"):
                error = body.get("error") if isinstance(body, dict) else response.text[:200]
                raise _Refused(response.status_code, f"{url}: {name}: {error}")
            return body["result"]
        raise AssertionError("unreachable")

    with httpx.Client(timeout=timeout, headers=headers, follow_redirects=True) as client:
        meta: dict[str, Any] = {"fetched_from": _public(url), "fetched_at": _now()}
        try:
            meta["masterchain_seqno"] = int(call(client, "getMasterchainInfo", {})["last"]["seqno"])
        except (_Refused, KeyError, TypeError, ValueError):
            pass  # informative only
        if method in ("auto", "all"):
            try:
                result = call(client, "getConfigAll", {})
                return ChainConfig.from_b64(_cell_bytes(result, url), _public(url), meta)
            except _Refused as exc:
                if method == "all" or exc.status not in (404, 405, 501):
                    raise ConfigError(str(exc)) from exc
        params: dict[int, Cell] = {}
        # getConfigParam refuses negative ids ("param should be non-negative"): those few
        # (-1000, -999, -90, -71 on mainnet) are only in getConfigAll's answer.
        for pid in sorted(p for p in parse_params(load_config().b64) if p >= 0):
            try:
                result = call(client, "getConfigParam", {"config_id": pid})
            except _Refused as exc:
                if exc.status == 422 or exc.status == 404:  # this network has no such param
                    continue
                raise ConfigError(str(exc)) from exc
            params[pid] = cell_from(_cell_bytes(result, url))
        return ChainConfig.from_b64(build_config(params), _public(url), meta)


class _Refused(ConfigError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _cell_bytes(result: Any, url: str) -> str:
    try:
        value = result["config"]["bytes"]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{url}: answer without config.bytes") from exc
    if not isinstance(value, str):
        raise ConfigError(f"{url}: config.bytes is not a string")
    return value


def _public(url: str) -> str:
    """The URL without its query (which may hold an api_key)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# -- what matters for fees ---------------------------------------------------------------


def _gas(cell: Cell) -> dict[str, int]:
    s = cell.begin_parse()
    out: dict[str, int] = {}
    tag = int(s.load_uint(8))
    if tag == 0xD1:  # gas_flat_pfx
        out["flat_gas_limit"] = int(s.load_uint(64))
        out["flat_gas_price"] = int(s.load_uint(64))
        tag = int(s.load_uint(8))
    out["gas_price"] = int(s.load_uint(64))  # nanoton per 65536 gas
    out["gas_limit"] = int(s.load_uint(64))
    if tag == 0xDE:
        out["special_gas_limit"] = int(s.load_uint(64))
    out["gas_credit"] = int(s.load_uint(64))
    out["block_gas_limit"] = int(s.load_uint(64))
    return out


def _fwd(cell: Cell) -> dict[str, int]:
    s = cell.begin_parse()
    s.skip_bits(8)  # msg_forward_prices#ea
    names = ("lump_price", "bit_price", "cell_price", "ihr_price_factor")
    out = {n: int(s.load_uint(64 if n != "ihr_price_factor" else 32)) for n in names}
    out["first_frac"] = int(s.load_uint(16))
    out["next_frac"] = int(s.load_uint(16))
    return out


def _storage(cell: Cell) -> dict[str, int]:
    """The newest entry of param 18 (storage prices per bit and cell per 65536 seconds)."""
    parsed: Any = HashMap.parse(cell.begin_parse(), 32, value_deserializer=lambda s: s)
    newest = max((parsed or {}).items(), key=lambda kv: int(kv[0]))[1]
    newest.skip_bits(8)
    names = ("utime_since", "bit_price_ps", "cell_price_ps", "mc_bit_price_ps", "mc_cell_price_ps")
    return {n: int(newest.load_uint(32 if n == "utime_since" else 64)) for n in names}


def fee_summary(config: ChainConfig) -> dict[str, Any]:
    """Global version and the fee params (18, 20, 21, 24, 25) as plain numbers."""
    params = config.params
    v = params[8].begin_parse()
    v.skip_bits(8)
    return {
        "global_version": int(v.load_uint(32)),
        "storage": _storage(params[18]),
        "gas_masterchain": _gas(params[20]),
        "gas_basechain": _gas(params[21]),
        "fwd_masterchain": _fwd(params[24]),
        "fwd_basechain": _fwd(params[25]),
    }


def resolve_config(file: str | None, url: str | None) -> ChainConfig:
    """What `tonrail localnet --config FILE --config-from URL` runs with: the config fetched
    from URL (then saved to FILE when one is named, so later offline starts reuse it), else
    FILE, else the bundled mainnet config."""
    if url is None:
        return load_config(file)
    config = fetch_config(url)
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        config.save(file)
    return config


def describe(config: ChainConfig) -> str:
    """One line for the start-up log: where the config came from and how recent it is."""
    since = config.validators_since()
    seqno = config.meta.get("masterchain_seqno")
    parts = [f"config from {config.source}"]
    if seqno is not None:
        parts.append(f"masterchain block {seqno}")
    if since is not None:
        parts.append(f"validator round since {since:%Y-%m-%d %H:%M} UTC")
    return ", ".join(parts)
