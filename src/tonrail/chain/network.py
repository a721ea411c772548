"""TON network presets (mainnet, testnet, localnet) and their resolution from settings.

A preset holds everything that differs between networks: toncenter endpoints (lists, for
failover), the address testnet-flag rule, the USDT jetton master, payout limits, gas caps,
the approval threshold, the confirmation timeout and the highload wallet parameters.
`resolve_network(settings)` starts from the preset named by TON_NETWORK and applies the
overrides from settings (see docs/TON-RAIL.md, "Networks and toncenter").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from tonrail.chain.address import WORKCHAINS, check_network
from tonrail.errors import InvalidAddress, TonrailError
from tonrail.settings import Settings

NetworkName = Literal["mainnet", "testnet", "localnet"]

TON = 10**9  # nanoton per TON
USDT = 10**6  # micro-USDT per USDT

MAINNET_USDT_MASTER = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
HIGHLOAD_SUBWALLET_ID = 0x10AD
HIGHLOAD_TIMEOUT_SECONDS = 3600


# An error class and plain frozen dataclasses: alike others in shape only.
class NetworkConfigError(TonrailError):
    """The TON network configuration is unusable (bad URL list, missing jetton master...)."""

    code = "ton_network_config_invalid"
    status = 500


@dataclass(frozen=True, slots=True)
class AmountRange:
    """Inclusive payout range in minor units of one asset."""

    min: int
    max: int


@dataclass(frozen=True, slots=True)
class GasCaps:
    """Upper bounds, in nanoton, on what one payout may attach or spend; above: refuse/defer."""

    ton_transfer_fee: int  # fees the hot wallet may spend for one TON transfer
    jetton_transfer_attach: int  # TON attached to a jetton transfer (the excess comes back)
    jetton_transfer_fee: int  # fees actually spent for one jetton transfer


@dataclass(frozen=True, slots=True)
class TonNetwork:
    """Everything the TON rail needs to know about the network it runs on."""

    name: NetworkName
    v2_urls: tuple[str, ...]
    v3_urls: tuple[str, ...]
    # True: user-friendly addresses must carry the testnet flag; False: must not; None: either.
    testnet_flag: bool | None
    usdt_master: str | None
    payout_limits: dict[str, AmountRange]
    gas_caps: GasCaps
    approval_threshold_usdt: int
    confirmation_timeout_seconds: int
    workchains: tuple[int, ...] = WORKCHAINS  # where payees may live (TON_WORKCHAINS)
    highload_subwallet_id: int = HIGHLOAD_SUBWALLET_ID
    highload_timeout_seconds: int = HIGHLOAD_TIMEOUT_SECONDS
    api_key: str = field(default="", repr=False)  # never shown in a repr

    @property
    def is_mainnet(self) -> bool:
        return self.name == "mainnet"

    def limits_for(self, asset: str) -> AmountRange:
        """The payout range of `asset`; KeyError for an asset this rail does not pay out."""
        return self.payout_limits[asset]


_DEFAULT_LIMITS = {
    "TON": AmountRange(1_000_000, 5_000_000 * TON),  # 0.001 .. 5M TON
    "USDT": AmountRange(10_000, 10_000_000 * USDT),  # 0.01 .. 10M USDT
}
# Before the 2026 fee cut a wallet transfer cost about 0.0055 TON and a USDT transfer about
# 0.0145 TON: the caps leave room for a fee rise but stop a runaway (docs/TON-RAIL.md).
_DEFAULT_GAS = GasCaps(
    ton_transfer_fee=50_000_000,  # 0.05 TON
    jetton_transfer_attach=100_000_000,  # 0.1 TON
    jetton_transfer_fee=50_000_000,  # 0.05 TON
)
_APPROVAL_THRESHOLD = 1_000_000 * USDT

# Each network spelled out in full: alike in shape only, the values differ.
# The networks' constants, field by field: alike one another in shape only.
MAINNET = TonNetwork(
    name="mainnet",
    v2_urls=("https://toncenter.com/api/v2",),
    v3_urls=("https://toncenter.com/api/v3",),
    testnet_flag=False,
    usdt_master=MAINNET_USDT_MASTER,
    payout_limits=_DEFAULT_LIMITS,
    gas_caps=_DEFAULT_GAS,
    approval_threshold_usdt=_APPROVAL_THRESHOLD,
    confirmation_timeout_seconds=180,
)
TESTNET = TonNetwork(
    name="testnet",
    v2_urls=("https://testnet.toncenter.com/api/v2",),
    v3_urls=("https://testnet.toncenter.com/api/v3",),
    testnet_flag=True,
    usdt_master=None,  # testnet has no official USDT: USDT_JETTON_MASTER must name one
    payout_limits=_DEFAULT_LIMITS,
    gas_caps=_DEFAULT_GAS,
    approval_threshold_usdt=_APPROVAL_THRESHOLD,
    confirmation_timeout_seconds=180,
)
LOCALNET = TonNetwork(
    name="localnet",
    v2_urls=("http://127.0.0.1:8081/api/v2",),
    v3_urls=("http://127.0.0.1:8081/api/v3",),
    testnet_flag=None,  # the local network renders mainnet-form addresses; accept both
    usdt_master=None,  # comes from the local network's genesis (/localnet/genesis)
    payout_limits=_DEFAULT_LIMITS,
    gas_caps=_DEFAULT_GAS,
    approval_threshold_usdt=_APPROVAL_THRESHOLD,
    confirmation_timeout_seconds=30,
)
PRESETS: dict[str, TonNetwork] = {n.name: n for n in (MAINNET, TESTNET, LOCALNET)}


def parse_url_list(value: str, setting: str) -> tuple[str, ...]:
    """Split a comma-separated URL list; each must be http(s) with a host, no trailing slash."""
    urls: list[str] = []
    for part in value.split(","):
        url = part.strip().rstrip("/")
        if not url:
            continue
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or rest.startswith("/"):
            raise NetworkConfigError(f"{setting}: {url[:100]!r} is not an http(s) URL")
        urls.append(url)
    if value.strip() and not urls:
        raise NetworkConfigError(f"{setting} names no URL")
    return tuple(urls)


def parse_workchains(value: str) -> tuple[int, ...]:
    """TON_WORKCHAINS: a comma-separated subset of `0,-1` (empty: both)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        return WORKCHAINS
    if any(p not in ("0", "-1") for p in parts):
        raise NetworkConfigError(
            f"TON_WORKCHAINS: {value[:40]!r} names a workchain other than 0 and -1",
            param="TON_WORKCHAINS",
        )
    return tuple(sorted({int(p) for p in parts}, reverse=True))


def resolve_network(settings: Settings) -> TonNetwork:
    """The preset named by TON_NETWORK with the overrides from settings applied.

    Overrides: TON_API_URL / TON_API_V3_URL (comma-separated lists replace the preset's),
    TON_API_KEY, USDT_JETTON_MASTER, TON_WORKCHAINS, LIMITS_MIN/MAX_TON/USDT and
    APPROVAL_THRESHOLD_USDT (when set explicitly), TON_GAS_CAP_* and
    TON_CONFIRMATION_TIMEOUT_SECONDS (when > 0).
    """
    preset = PRESETS.get(settings.ton_network)
    if preset is None:
        raise NetworkConfigError(f"unknown TON network {settings.ton_network!r}")
    explicit = settings.model_fields_set
    v2 = parse_url_list(settings.ton_api_url, "TON_API_URL") or preset.v2_urls
    v3 = parse_url_list(settings.ton_api_v3_url, "TON_API_V3_URL") or preset.v3_urls
    usdt_master = settings.usdt_jetton_master.strip() or preset.usdt_master
    workchains = parse_workchains(settings.ton_workchains)
    if usdt_master is not None:
        try:
            check_network(usdt_master, preset, "USDT_JETTON_MASTER")
        except InvalidAddress as exc:
            raise NetworkConfigError(exc.message, param="USDT_JETTON_MASTER") from None

    limits = dict(preset.payout_limits)
    for asset, lo, hi in (
        ("TON", "limits_min_ton", "limits_max_ton"),
        ("USDT", "limits_min_usdt", "limits_max_usdt"),
    ):
        current = limits[asset]
        limits[asset] = AmountRange(
            getattr(settings, lo) if lo in explicit else current.min,
            getattr(settings, hi) if hi in explicit else current.max,
        )
        if not 0 < limits[asset].min <= limits[asset].max:
            raise NetworkConfigError(f"payout limits of {asset} are not 0 < min <= max")

    gas = preset.gas_caps
    gas = GasCaps(
        ton_transfer_fee=settings.ton_gas_cap_ton_transfer or gas.ton_transfer_fee,
        jetton_transfer_attach=settings.ton_gas_cap_jetton_attach or gas.jetton_transfer_attach,
        jetton_transfer_fee=settings.ton_gas_cap_jetton_transfer or gas.jetton_transfer_fee,
    )
    if min(gas.ton_transfer_fee, gas.jetton_transfer_attach, gas.jetton_transfer_fee) < 0:
        raise NetworkConfigError("TON gas caps must not be negative")

    return replace(
        preset,
        v2_urls=v2,
        v3_urls=v3,
        usdt_master=usdt_master,
        workchains=workchains,
        payout_limits=limits,
        gas_caps=gas,
        approval_threshold_usdt=settings.approval_threshold_usdt
        if "approval_threshold_usdt" in explicit
        else preset.approval_threshold_usdt,
        confirmation_timeout_seconds=settings.ton_confirmation_timeout_seconds
        or preset.confirmation_timeout_seconds,
        api_key=settings.ton_api_key.get_secret_value(),
    )
