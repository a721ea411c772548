"""All configuration, read once from the environment (see .env.example).

No other module reads os.environ: ask `get_settings()`.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tonrail.aws_secrets import fetch as fetch_aws_secrets

Network = Literal["localnet", "testnet", "mainnet"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_JWT_SECRET = "dev-only-change-me-dev-only-change-me"  # noqa: S105 (refused in production)
ALERT_CHANNEL_NAMES = ("email", "slack", "pagerduty")  # monitoring/channels/ implements each


def parse_alert_routes(text: str) -> dict[str, tuple[str, ...]]:
    """ALERT_ROUTES `critical=email,slack,pagerduty;error=email,slack` -> {severity: channels}."""
    routes: dict[str, tuple[str, ...]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        severity, _, names = part.partition("=")
        channels = tuple(n.strip() for n in names.split(",") if n.strip())
        unknown = set(channels) - set(ALERT_CHANNEL_NAMES)
        if unknown:
            raise ValueError(f"ALERT_ROUTES names unknown channels {sorted(unknown)}")
        routes[severity.strip()] = channels
    return routes


_EXPIRY = re.compile(r"@(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)$")


def rotating_values(text: str) -> list[tuple[str, datetime | None]]:
    """A rotating secret setting (JWT_SECRET, STRIPE_WEBHOOK_SECRET, PAYPAL_WEBHOOK_ID):
    comma-separated values, the first the current one; a value retired by `tonrail keys
    rotate-secret` carries `@<UTC time>` after which it is no longer accepted."""
    out: list[tuple[str, datetime | None]] = []
    for part in text.split(","):
        part = part.strip()
        match = _EXPIRY.search(part)
        if match:
            expiry = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            out.append((part[: match.start()], expiry))
        elif part:
            out.append((part, None))
    return out


def active_values(text: str, now: datetime) -> list[str]:
    """The values of a rotating secret still accepted at `now`, the current one first."""
    return [v for v, until in rotating_values(text) if v and (until is None or now < until)]


def environment_variables(dotenv: Any = None) -> dict[str, str]:
    """The process environment over the .env file's variables (names upper-cased)."""
    found: dict[str, str] = {}
    if dotenv is not None:
        found.update({k.upper(): str(v) for k, v in dotenv.items() if v is not None})
    found.update({k.upper(): v for k, v in os.environ.items()})
    return found


class AwsSecretsSource(PydanticBaseSettingsSource):
    """Settings given as NAME_SECRET_ARN or in TONRAIL_SECRETS_ARN (aws_secrets.py); they
    win over the same setting in the environment."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: DotEnvSettingsSource):
        super().__init__(settings_cls)
        self._dotenv = dotenv

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads everything at once

    def __call__(self) -> dict[str, Any]:
        env = environment_variables(getattr(self._dotenv, "env_vars", None))
        return fetch_aws_secrets(env, self.settings_cls.model_fields)


class Settings(BaseSettings):
    """Every setting of the service with a safe default for the embedded (laptop) mode."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(dotenv_settings, DotEnvSettingsSource)
        secrets = AwsSecretsSource(settings_cls, dotenv_settings)
        return init_settings, secrets, env_settings, dotenv_settings, file_secret_settings

    # --- runtime
    environment: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = False
    data_dir: Path = Path("var")

    # --- database: SQLite file in data_dir unless DATABASE_URL says otherwise
    database_url: str = ""
    db_pool_size: int = 10
    sqlite_busy_timeout_ms: int = 15_000
    redis_url: str = ""  # shared rate limits (api_limits.py); empty = per process

    # --- TON
    ton_network: Network = "localnet"
    ton_api_url: str = ""  # comma-separated toncenter v2 URLs; empty = the network preset's
    ton_api_v3_url: str = ""  # comma-separated toncenter v3 URLs; empty = the network preset's
    ton_api_key: SecretStr = SecretStr("")
    ton_master_key: SecretStr = SecretStr("")
    payment_processor_address: str = ""
    usdt_jetton_master: str = ""
    ton_workchains: str = "0,-1"  # workchains payout destinations may be on: "0,-1" or "0"
    # Link to a transaction, `{hash}` its hex hash; empty = the network's (chain/links.py).
    ton_explorer_url: str = ""
    localnet_port: int = 8081
    localnet_block_ms: int = 400

    # --- TON payouts (processing/ton_loop.py)
    ton_batch_max: int = 254  # payouts per highload request (more are nested automatically)
    ton_created_at_lag_s: int = 30  # created_at in the past, or the wallet rejects it
    ton_resend_seconds: int = 5  # re-send a stored request not yet seen on chain
    ton_max_open_requests: int = 0  # requests of the hot wallet open at once; 0 = no cap
    ton_track_pause_ms: int = 400  # a request still in flight is read again after this (a block)
    ton_expiry_margin_s: int = 10  # after valid_until, before proving "never processed"
    ton_max_attempts: int = 3  # then the payout fails (or, later, falls back)
    ton_retry_backoff_s: int = 5  # doubled on every further attempt
    ton_jetton_attach_nanoton: int = 50_000_000  # TON attached to a jetton transfer
    ton_jetton_forward_nanoton: int = 1  # forward_ton_amount: notify the recipient
    route_congestion_max_age_s: int = 60  # older congestion samples do not route payouts
    crash_at: str = ""  # fault injection (kit/faults.py): die at this point; tests only

    # --- TON rail: hot wallet key, network overrides, toncenter client (issue 4; docs/TON-RAIL.md)
    # 0 means "the network preset's value" (chain/network.py); amounts are nanoton.
    ton_master_key_file: str = ""  # envelope file when TON_MASTER_KEY is empty; "" = DATA_DIR/...
    ton_key_passphrase: SecretStr = SecretStr("")  # KEK passphrase; dev default outside production
    # AWS KMS key (id, ARN or alias/...) that wraps new envelopes (init-wallet, keys rewrap);
    # "" = the passphrase. Opening an envelope uses the key its envelope names (docs/SECURITY.md)
    ton_key_kms_key_id: str = ""
    ton_gas_cap_ton_transfer: int = 0  # max nanoton a TON payout may spend in fees
    ton_gas_cap_jetton_attach: int = 0  # max nanoton attached to a jetton transfer
    ton_gas_cap_jetton_transfer: int = 0  # max nanoton a jetton payout may spend in fees
    ton_confirmation_timeout_seconds: int = 0  # a sent payout unconfirmed this long: unknown
    toncenter_rps: float = 0.0  # client-side requests per second; 0 = 1 keyless, 10 with a key
    toncenter_timeout_seconds: float = 10.0  # per request
    toncenter_max_attempts: int = 6  # per call, across all endpoints
    toncenter_backoff_initial_seconds: float = 0.5  # 429 without Retry-After: exponential ...
    toncenter_backoff_max_seconds: float = 10.0  # ... with jitter, capped here

    # --- limits and approvals (minor units of the named asset)
    limits_min_ton: int = 1_000_000  # 0.001 TON
    limits_max_ton: int = 5_000_000 * 10**9
    limits_min_usdt: int = 10_000  # 0.01 USDT
    limits_max_usdt: int = 10_000_000 * 10**6
    limits_min_usd: int = 100
    limits_max_usd: int = 1_000_000 * 100
    approval_threshold_usdt: int = 1_000_000 * 10**6
    # The treasury multisig (docs/TREASURY.md): payouts that needed approvers are paid from
    # it by a multisig order; empty: they go out from the hot wallet like the others.
    treasury_address: str = ""
    treasury_order_lifetime_seconds: int = 7 * 24 * 3600  # approvers have this long
    # Below ALERT_HOT_WALLET_FLOOR_TON/USDT the treasury loop proposes a top-up order of this
    # much (minor units; 0: never); the approvers still decide.
    treasury_topup_ton: int = 0
    treasury_topup_usdt: int = 0
    approvals_required: int = 2
    daily_volume_limit_usdt: int = 10_000_000 * 10**6
    # The account whose payouts draw on the hot wallet directly, with no balance to cover
    # them (the single-company deployment). "*": every account does (no balance enforced;
    # today's behaviour and the demo's); "" : none does. A multi-merchant deployment sets
    # its own account id (or ""), so every other account pays out only what it holds.
    house_account_id: str = "*"
    # Exchange rates for the limits (rates.py): "fixed" (the table below), "http" (a
    # CoinGecko-style simple/price API at RATE_HTTP_URL) or "dex" (a STON.fi v1 TON/USDT
    # pool's get_pool_data on chain at RATE_DEX_POOL). A rate older than
    # RATE_MAX_AGE_SECONDS holds the payouts that need it (hold_reason rate_stale).
    rate_source: Literal["fixed", "http", "dex"] = "fixed"
    # USDT per whole unit of each asset (RATE_SOURCE=fixed; the backup rails' prices always).
    rate_ton_usdt: str = "5.00"
    rate_usd_usdt: str = "1.00"
    rate_http_url: str = "https://api.coingecko.com/api/v3"
    rate_http_ton_id: str = "the-open-network"  # the source's id of TON
    rate_http_usdt_id: str = "tether"  # the source's id of USDT
    rate_http_api_key: SecretStr = SecretStr("")  # sent as x-cg-pro-api-key when set
    rate_http_timeout_seconds: float = 5.0
    rate_dex_pool: str = ""  # RATE_SOURCE=dex: a STON.fi v1 TON/USDT pool's address
    rate_dex_ton_reserve: int = 0  # which of its reserves (get_pool_data) is TON: 0 or 1
    # a pool's TON price that moved more than this from the last accepted (still fresh) one
    # is refused as a failed read (a swap moves a spot price); 0: no check
    rate_dex_max_move_pct: float = 10.0
    rate_refresh_seconds: int = 60  # read the source this often (a failure: again after this)
    rate_max_age_seconds: int = 300  # older: stale, payouts that need it are held
    metadata_max_bytes: int = 8_192

    # --- API
    # production: 32+ random characters; during a rotation "new,old@<UTC expiry>" (rotating_values)
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    idempotency_ttl_hours: int = 24  # records expire; a key reused after this is a new request
    # Authenticated keys remembered per process this long at most; 0 = off. A revocation or
    # lockout is seen sooner: within access_recheck_ms (security/access.py).
    api_key_cache_seconds: float = 30.0
    # How often each API process reads the access version (key revoked, subject locked or
    # unlocked, anywhere); 0 = on every request. At most 1000: revocation within a second.
    access_recheck_ms: int = Field(default=500, ge=0, le=1000)
    # How long a lockout lasts (counterparty, API key, IP, dashboard sign-in IP); 0 = until
    # an admin unlocks it.
    lockout_seconds: int = Field(default=3600, ge=0)
    page_max_limit: int = 100
    payouts_batch_max: int = 500  # payouts in one POST /v1/payouts/batch
    # Proxies (IPs or CIDR networks, comma-separated) whose X-Forwarded-For is believed;
    # empty = none: the client is the socket peer (security/client_ip.py; checked by create_app)
    trusted_proxies: str = ""
    # The input boundary (input_boundary.py): bodies above this are refused before they are read
    request_body_max_bytes: int = 1_048_576  # 413 body_too_large
    request_json_max_depth: int = 32  # objects and arrays nested deeper: 400 body_too_deep

    # --- rate limits (security/rate_limits.py; docs/API.md "Rate limits"). Token buckets:
    # PER_SECOND refills, BURST is the capacity; a rate of 0 turns that bucket off.
    rate_limit_enabled: bool = True
    rate_limit_key_read_per_second: float = 100.0  # per API key, GET requests
    rate_limit_key_read_burst: int = 200
    rate_limit_key_write_per_second: float = 50.0  # per API key, POST requests
    rate_limit_key_write_burst: int = 100
    rate_limit_ip_read_per_second: float = 200.0  # per client address (IPv6: per /64)
    rate_limit_ip_read_burst: int = 400
    rate_limit_ip_write_per_second: float = 100.0
    rate_limit_ip_write_burst: int = 200
    rate_limit_login_per_minute: float = 10.0  # POST /dashboard/login per client address
    rate_limit_login_burst: int = 20
    # The hosted checkout page /pay/ per client address (docs/CHECKOUT.md "Rate limits"):
    # the page, its status polls (one a second per open page), QR code and backup-rail
    # starts; 1200 a minute lets 20 customers behind one NAT poll at once.
    rate_limit_pay_per_minute: float = 1200.0
    rate_limit_pay_burst: int = 300
    # GET /pay/{id}/jetton-wallet, which may ask toncenter (answers cached per owner)
    rate_limit_pay_lookup_per_minute: float = 30.0
    rate_limit_pay_lookup_burst: int = 10
    rate_limit_redis_prefix: str = "tonrail:rl"  # keys in REDIS_URL's database
    rate_limit_redis_timeout_ms: int = 1000  # a slower answer counts as Redis down
    rate_limit_redis_pool_size: int = 50  # connections per process; more requests wait
    rate_limit_redis_retry_seconds: float = 5.0  # after a failure, per-process buckets this long
    # While Redis is down: refuse payouts (or batches) worth more than this (micro-USDT)
    rate_limit_fail_closed_usdt: int = 10_000 * 10**6

    # --- merchant webhooks (docs/WEBHOOKS.md)
    # Hosts or addresses (or CIDR ranges) a webhook may reach although they resolve to a
    # private, loopback or link-local address, comma-separated; "" = none.
    webhook_allowed_hosts: str = ""
    webhook_timeout_seconds: float = 10.0  # one delivery attempt, connect to last byte
    webhook_disable_after_seconds: int = 3 * 86_400  # an endpoint failing this long is disabled
    webhook_secret_overlap_seconds: int = 86_400  # a rotated-out secret still signs this long
    webhook_concurrency: int = 8  # requests one worker has in flight at once

    # --- workers
    worker_lease_seconds: int = 30
    worker_batch_size: int = 50
    # One worker at a time runs `ton_payouts` (kit/loop_lease.py); a standby takes over at
    # most this long (plus a second) after the holder died. 0 = every worker runs it at once.
    ton_payouts_lease_seconds: int = Field(default=10, ge=0)

    # --- retention of personal data (privacy/; docs/PRIVACY.md). Days a class is kept; after
    # it the retention loop deletes the rows or pseudonymises their personal fields.
    # Financial records (payments, attempts, refunds, transfers, deposits, provider events,
    # outbox, audit log): their people are pseudonymised, amounts and the books kept forever.
    retention_financial_days: int = Field(default=7 * 365, ge=1)
    # Security events naming IPs, keys and counterparties (failures, closed lockouts), ended
    # dashboard sessions and webhook request logs: deleted.
    retention_security_days: int = Field(default=90, ge=1)
    retention_enabled: bool = True  # the daily `retention` worker loop
    retention_hour_utc: int = Field(default=3, ge=0, le=23)  # runs once a day from this hour
    retention_batch_size: int = Field(default=500, ge=1)  # rows per transaction

    # --- backup rails (a currency, fee schedule and limit each: alike in shape only)
    stripe_secret_key: SecretStr = SecretStr("")
    stripe_publishable_key: str = ""
    stripe_catch_up_seconds: int = 300  # the stripe_catch_up loop reads Stripe's events; 0 = never
    stripe_webhook_secret: SecretStr = SecretStr("")
    stripe_api_base: str = "https://api.stripe.com"
    paypal_client_id: str = ""
    paypal_client_secret: SecretStr = SecretStr("")
    paypal_api_base: str = "https://api-m.sandbox.paypal.com"

    # --- backup rails: routing, fees, limits, providers (issue 6; docs/BACKUP-RAILS.md)
    # Fees and maximums are minor units of each rail's currency (cents for USD).
    backup_rails: str = "stripe,paypal,bank"  # enabled backup rails, in priority order
    route_congestion_urgent_pct: int = 50  # TON congestion above which urgent payments divert
    route_congestion_normal_pct: int = 75
    route_congestion_low_pct: int = 95
    circuit_failure_threshold: int = 5  # consecutive rail errors that open its breaker
    circuit_open_seconds: int = 60  # then one half-open probe is let through
    rate_eur_usdt: str = "1.08"  # USDT per 1 EUR, for rails configured in EUR
    provider_timeout_seconds: float = 20.0
    stripe_currency: str = "USD"
    stripe_incoming_mode: Literal["payment_intent", "checkout_session"] = "payment_intent"
    stripe_checkout_success_url: str = "http://127.0.0.1:8000/checkout/success"
    stripe_checkout_cancel_url: str = "http://127.0.0.1:8000/checkout/cancel"
    stripe_payout_mode: Literal["transfer", "payout"] = "transfer"
    stripe_webhook_tolerance_seconds: int = 300
    # Each provider's fee schedule and cap, field by field: alike in shape only.
    stripe_fee_bps: int = 290
    stripe_fee_fixed: int = 30
    stripe_max_amount: int = 10_000_000
    paypal_currency: str = "USD"
    paypal_webhook_id: str = ""  # during a rotation "new,old@<UTC expiry>" (rotating_values)
    paypal_verify_mode: Literal["api", "certificate"] = "api"
    paypal_cert_url_prefixes: str = (
        "https://api.paypal.com/,https://api.sandbox.paypal.com/,"
        "https://api-m.paypal.com/,https://api-m.sandbox.paypal.com/"
    )
    paypal_return_url: str = "http://127.0.0.1:8000/checkout/success"
    paypal_cancel_url: str = "http://127.0.0.1:8000/checkout/cancel"
    paypal_home_country: str = "US"
    paypal_fee_bps: int = 290
    paypal_fee_fixed: int = 30
    paypal_international_fee_bps: int = 50
    paypal_max_amount: int = 10_000_000
    bank_currency: str = "USD"
    bank_account_name: str = ""
    bank_account_iban: str = ""
    bank_account_bic: str = ""
    bank_fee_fixed: int = 500
    bank_max_amount: int = 100_000_000
    bank_settlement_business_days: int = 3
    bank_pain001_schema: str = "pain.001.001.03"

    # --- monitoring
    slack_webhook_url: SecretStr = SecretStr("")
    payment_alert_email: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    pagerduty_routing_key: SecretStr = SecretStr("")
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"

    # --- AWS
    aws_region: str = "us-east-1"
    cloudwatch_namespace: str = "Deligate/Payments"
    aws_kms_endpoint_url: str = ""  # "" = AWS's; a local KMS (tests, LocalStack) otherwise
    # Settings given as NAME_SECRET_ARN, or in the JSON secret TONRAIL_SECRETS_ARN, are read
    # from AWS Secrets Manager at start and again this often (0 = at start only); docs/SECURITY.md
    secrets_refresh_seconds: int = 300
    aws_secretsmanager_endpoint_url: str = ""  # "" = AWS's; a local one otherwise
    # where `tonrail rehearsal verify` writes, and the mainnet deploy looks for, the testnet
    # verification records (docs/DEPLOY.md)
    rehearsal_record_dir: Path = Path("var/rehearsal")

    # --- monitoring and alerting (issue 7; docs/monitoring.md). Money in minor units.
    monitoring_window_seconds: int = 300  # the window of rates and failure counts
    alert_success_rate_min_pct: float = 95.0
    alert_success_rate_min_sample: int = 20  # fewer finished payments: no verdict
    # Service objectives (monitoring/slo.py; the dashboard's Overview, the slo_burn rule)
    slo_success_target_pct: float = Field(default=99.0, gt=0, lt=100)
    slo_confirmation_seconds: int = Field(default=60, gt=0)  # a payout confirmed within this
    slo_confirmation_target_pct: float = Field(default=95.0, gt=0, le=100)  # ... this often
    slo_api_p99_ms: int = Field(default=200, gt=0)  # /v1 requests, 99th percentile
    slo_uptime_target_pct: float = Field(default=99.9, gt=0, le=100)  # minutes /readyz ok
    slo_minutes_keep_days: int = Field(default=8, ge=1)  # per-minute counts kept this long
    signals_flush_seconds: float = Field(default=10.0, gt=0)  # an API process writes its signals
    alert_pending_max: int = 100
    alert_stuck_seconds: int = 180  # pending longer (or past its target): stuck
    alert_progress_stale_seconds: int = 300  # open payment with no change for this long
    alert_bank_business_days: int = 3  # a bank payout pending this many business days is normal
    alert_failure_pattern_count: int = 5  # same error code on one rail within the window
    alert_suspicious_failures: int = 10  # per counterparty, API key or IP: locked
    alert_fee_factor: float = 3.0  # recent median fee above factor x baseline median
    alert_fee_min_baseline: int = 20
    alert_fee_baseline_seconds: int = 86_400
    alert_hot_wallet_floor_ton: int = 0  # nanoton; 0 = no floor
    alert_hot_wallet_floor_usdt: int = 0  # micro-USDT; 0 = no floor
    alert_heartbeat_stale_seconds: int = 60
    alert_heartbeat_forget_seconds: int = 86_400  # a loop silent this long is retired
    alert_toncenter_unreachable_seconds: int = 10  # no toncenter success for this long
    alert_rate_limiter_seconds: int = 60  # an API process's report of Redis down counts this long
    alert_cooldown_seconds: int = 300  # least time between two triggers of one alert
    alert_routes: str = (
        "critical=email,slack,pagerduty;error=email,slack;warning=email,slack;info=slack"
    )
    alert_channel_max_attempts: int = 8
    alert_channel_retry_base_seconds: float = 2.0
    alert_channel_timeout_seconds: float = 10.0
    alert_source: str = "tonrail"
    alert_email_from: str = "tonrail@localhost"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    cloudwatch_enabled: bool = False
    cloudwatch_endpoint_url: str = ""
    metrics_token: SecretStr = SecretStr("")  # if set, /metrics wants "Bearer <token>"
    audit_large_payout_usdt: int = 100_000 * 10**6
    # Compliance reports (reports/): payments from this many micro-USDT are listed as large;
    # 0 = APPROVAL_THRESHOLD_USDT.
    report_large_transaction_usdt: int = 0
    # AML/KYC screening (screening/): a sanctions list file (CSV, read again when it
    # changes) and/or a commercial screening API; both empty = no screening.
    screening_list_file: str = ""
    screening_http_url: str = ""
    screening_http_api_key: SecretStr = SecretStr("")
    screening_http_timeout_seconds: float = 5.0

    # --- fee optimizer (issue 5; docs/FEES.md). Fees in nanoton, USD in micro-USD.
    fees_sample_seconds: float = 10.0  # how often the sampler looks at the network
    fees_config_refresh_seconds: int = 300  # config params 20/21/24/25 re-read this often
    fees_probe_batch_size: int = 10  # transfers in the representative batch estimateFee prices
    fees_history_seconds: int = 3_600  # window of fee statistics
    fees_latency_window_seconds: int = 300  # our requests whose inclusion latency counts
    fees_ewma_alpha: float = 0.2  # weight of the newest fee in the EWMA
    fees_high_factor: float = 2.0  # a fee above factor x the recent p90 is unusually high
    fees_high_min_samples: int = 10  # fewer samples: no verdict
    fees_congestion_tau_seconds: float = 30.0  # smoothing time constant of congestion
    fees_latency_ok_ms: int = 2_000  # inclusion latency that is still 0 % congestion ...
    fees_latency_full_ms: int = 30_000  # ... and the one that is 100 %
    fees_queue_ok: int = 100  # outbound message queue that is still 0 % ...
    fees_queue_full: int = 5_000  # ... and 100 %
    fees_error_weight: float = 0.5  # toncenter error share counts this much toward congestion
    fees_assumed_latency_ms: int = 5_000  # planning latency while none is measured
    fees_max_fee_usd_micro: int = 1_000_000  # divert a payout whose fee would exceed this; 0 = off
    fees_max_fee_share_bp: int = 1_000  # ... or this share of its value; 0 = off
    fees_window_urgent_ms: int = 10_000  # longest wait for a batch, by priority
    fees_window_normal_ms: int = 30_000
    fees_window_low_ms: int = 600_000
    fees_value_of_time_nanoton: int = 150_000  # a payout's second of waiting; 0 = time is free
    fees_arrival_window_seconds: int = 60  # payouts created this recently give the arrival rate
    fees_hold_congestion_normal_pct: int = 90  # hold normal payouts at this congestion ...
    fees_hold_congestion_low_pct: int = 60  # ... low ones at this (urgent: never)
    fees_hold_step_seconds: int = 60  # a held payout is reconsidered after this long
    fees_divert_congestion_pct: int = 50  # a payout that would miss its target diverts above
    fees_jetton_attach_min_nanoton: int = 50_000_000  # least TON attached to a jetton transfer
    fees_jetton_attach_margin_pct: int = 200  # attach this % of the observed p90 jetton spend
    # A USDT payout our jetton wallet refused for too little TON attached is re-queued with
    # twice the TON, at most this (and the gas cap), at most this many times (docs/FEES.md).
    fees_jetton_attach_max_nanoton: int = 100_000_000
    fees_jetton_attach_retries: int = 2
    fees_status_decisions: int = 20  # decisions listed by GET /v1/fees/status

    # --- admin dashboard (issue 8; docs/DASHBOARD.md)
    dashboard_session_minutes: int = 480  # a sign-in lasts this long (JWT cookie)
    dashboard_cookie_secure: bool = False  # send the session cookie over HTTPS only
    dashboard_login_max_failures: int = 5  # wrong sign-ins in a row that lock the account ...
    dashboard_login_lock_seconds: int = 900  # ... for this long
    dashboard_assets_dir: str = ""  # htmx and Chart.js from npm; "" = the repo's node_modules
    dashboard_refresh_seconds: int = 2  # how often live panels poll
    dashboard_page_size: int = 50
    explorer_url: str = ""  # chain explorer base URL; "" = the network preset's (tonviewer)

    # --- hosted checkout page /pay/{invoice_id} (docs/CHECKOUT.md)
    merchant_name: str = "tonrail"  # shown to the customer and to wallets (TON Connect)
    checkout_poll_ms: int = 1000  # how often the page asks for the invoice's status
    checkout_base_url: str = ""  # public origin of /pay (https://pay.example.com); "" = request's
    # A TON Connect USDT payment: TON attached to the jetton transfer (the excess comes back to
    # the payer) and TON forwarded with the notification that carries the comment.
    checkout_jetton_attach_nanoton: int = 50_000_000
    checkout_jetton_forward_nanoton: int = 1

    @field_validator("alert_routes")
    @classmethod
    def _known_alert_channels(cls, value: str) -> str:
        parse_alert_routes(value)  # an unknown channel name fails at start, not at the first alert
        return value

    @model_validator(mode="after")
    def _production_jwt_secret(self) -> Settings:
        current = rotating_values(self.jwt_secret.get_secret_value())
        secret = current[0][0] if current else ""
        if self.environment == "production" and (secret == DEV_JWT_SECRET or len(secret) < 32):
            raise ValueError("JWT_SECRET: set 32 or more random characters in production")
        return self

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value if value.is_absolute() else (Path.cwd() / value)

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy async URL: DATABASE_URL, normalized, or the embedded SQLite file."""
        url = self.database_url.strip()
        if not url:
            return f"sqlite+aiosqlite:///{self.data_dir / 'tonrail.sqlite3'}"
        for prefix, driver in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(prefix):
                return driver + url[len(prefix) :]
        return url

    bootstrap_demo: bool = Field(default=True, description="tonrail run: create demo data")
    # tonrail run on the local network: mean seconds between demo payouts (0 = no traffic)
    demo_traffic_seconds: float = 3.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


class RehearsalSettings(BaseSettings):
    """The rehearsal's view of a deployment (`tonrail rehearsal pay|verify`, docs/DEPLOY.md):
    how to reach its public API, the chain through toncenter, and a wallet that pays
    invoices. From TONRAIL_* variables, else the file `make stack-up` writes (var/stack.env);
    on the real testnet the operator sets them (.env.example, "rehearsal")."""

    model_config = SettingsConfigDict(
        env_prefix="TONRAIL_", env_file="var/stack.env", extra="ignore", case_sensitive=False
    )

    network: Network = "localnet"
    api_url: str = ""  # the deployment's public base URL
    api_key: SecretStr = SecretStr("")  # payments:read + payments:write
    toncenter_url: str = ""  # base URL; v2 and v3 below default to <base>/api/v2 and /api/v3
    toncenter_v2_url: str = ""
    toncenter_v3_url: str = ""
    toncenter_api_key: SecretStr = SecretStr("")
    hot_wallet_address: str = ""  # the deployment's hot wallet (PAYMENT_PROCESSOR_ADDRESS)
    usdt_master: str = ""  # USDT jetton master on this network
    payer_wallet: Literal["v5r1"] = "v5r1"
    payer_address: str = ""
    payer_private_key: SecretStr = SecretStr("")  # 64 hex, or:
    payer_mnemonic: SecretStr = SecretStr("")  # 24 words
    database_url: str = ""  # read-only use: `ledger check` of the deployment's books
    rehearsal_timeout_seconds: float = 600.0  # for each payment to reach its final state

    @property
    def v2_url(self) -> str:
        return self.toncenter_v2_url or f"{self.toncenter_url.rstrip('/')}/api/v2"

    @property
    def v3_url(self) -> str:
        return self.toncenter_v3_url or f"{self.toncenter_url.rstrip('/')}/api/v3"
