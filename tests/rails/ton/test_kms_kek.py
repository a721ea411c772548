"""AWS KMS as the key-encryption key of the hot wallet envelope, in moto (KMS, offline):
seal and open, a wrapped key moved to another wallet's envelope, a disabled or deleted KMS
key (refused with a clear error, nothing sent), and `tonrail keys rewrap`."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from tonrail.cli import app
from tonrail.db import Database
from tonrail.payments.service import PaymentService
from tonrail.processing.ton_runtime import open_ton_rail
from tonrail.rails.ton import keys
from tonrail.rails.ton.keys import (
    ENVELOPE_PREFIX,
    HotWalletSigner,
    PassphraseKek,
    WalletKeyError,
    load_signer,
    open_envelope,
    seal,
)
from tonrail.rails.ton.kms_kek import KmsKek, kms_client
from tonrail.security.audit_log import recent, verify
from tonrail.settings import Settings, get_settings

REGION = "eu-central-1"
SEED = bytes(range(32))
OTHER_SEED = b"\x07" * 32
FAST = {"n": 2**14}  # the minimum scrypt cost accepted: keeps the test quick


@pytest.fixture
def kms() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("kms", region_name=REGION)


def new_key(kms: Any) -> str:
    return str(kms.create_key(Description="tonrail hot wallet KEK")["KeyMetadata"]["Arn"])


def bare(arn: str) -> str:
    return arn.rsplit("/", 1)[1]  # moto's disable_key wants the key id, not the ARN


def settings_for(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, aws_region=REGION, **values)  # type: ignore[call-arg]


def body_of(envelope: str) -> dict[str, Any]:
    text = envelope[len(ENVELOPE_PREFIX) :]
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))  # type: ignore[no-any-return]


def envelope_of(body: dict[str, Any]) -> str:
    raw = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return ENVELOPE_PREFIX + raw


def test_seal_and_open_under_kms(kms: Any, tmp_path: Path) -> None:
    arn = new_key(kms)
    s = settings_for(tmp_path, ton_key_kms_key_id=arn)
    envelope = seal(SEED, keys.sealing_kek(s))
    blob = body_of(envelope)["kek"]
    assert blob["kind"] == "aws-kms" and blob["key_id"] == arn
    assert SEED.hex() not in envelope and "scrypt" not in envelope
    # The envelope names its KMS key: opening needs no TON_KEY_KMS_KEY_ID and no passphrase.
    opened = settings_for(
        tmp_path, ton_master_key=envelope, environment="production", jwt_secret="j" * 40
    )
    assert load_signer(opened).public_key == HotWalletSigner(SEED).public_key
    assert repr(keys.kek_for(opened, blob)) == f"KmsKek(key_id={arn!r})"


def test_production_asks_the_passphrase_only_of_a_scrypt_envelope(kms: Any, tmp_path: Path) -> None:
    """No TON_KEY_PASSPHRASE in production: an aws-kms envelope opens; a scrypt one is refused
    with a message naming the passphrase and the kind, even with TON_KEY_KMS_KEY_ID set (the
    envelope, not the setting, decides which key-encryption key opens it)."""
    arn = new_key(kms)
    production = {"environment": "production", "jwt_secret": "j" * 40}
    under_kms = seal(SEED, keys.sealing_kek(settings_for(tmp_path, ton_key_kms_key_id=arn)))
    for kms_setting in ("", arn):
        s = settings_for(
            tmp_path, ton_master_key=under_kms, ton_key_kms_key_id=kms_setting, **production
        )
        assert load_signer(s).public_key == HotWalletSigner(SEED).public_key
    under_passphrase = seal(SEED, PassphraseKek("a long passphrase", **FAST))
    s = settings_for(
        tmp_path, ton_master_key=under_passphrase, ton_key_kms_key_id=arn, **production
    )
    with pytest.raises(WalletKeyError) as err:
        load_signer(s)
    assert err.value.code == "wallet_key_passphrase_missing"
    assert "TON_KEY_PASSPHRASE" in err.value.message and "scrypt" in err.value.message


def test_a_wrapped_key_moved_to_another_wallet_does_not_open(kms: Any, tmp_path: Path) -> None:
    kek = KmsKek(kms_client(settings_for(tmp_path)), new_key(kms))
    mine, theirs = body_of(seal(SEED, kek)), body_of(seal(OTHER_SEED, kek))
    # The other wallet's wrapped data key, in this wallet's envelope: the encryption context
    # names this wallet, KMS refuses (and the AES-GCM data would not match either).
    swapped = envelope_of({**mine, "kek": theirs["kek"]})
    with pytest.raises(WalletKeyError) as err:
        open_envelope(swapped, kek)
    assert err.value.code == "wallet_key_kms_refused"
    assert "encryption context" in err.value.message
    # The right blob asked with a context naming another wallet: refused the same way.
    with pytest.raises(WalletKeyError) as err:
        kek.unwrap(mine["kek"], HotWalletSigner(OTHER_SEED).public_key.hex())
    assert err.value.code == "wallet_key_kms_refused"
    assert open_envelope(envelope_of(mine), kek) == SEED


@pytest.mark.parametrize("how", ["disable", "schedule_deletion"])
def test_a_disabled_or_deleted_kms_key_is_refused_clearly(
    kms: Any, tmp_path: Path, how: str
) -> None:
    arn = new_key(kms)
    envelope = seal(SEED, KmsKek(kms_client(settings_for(tmp_path)), arn))
    if how == "disable":
        kms.disable_key(KeyId=bare(arn))
    else:
        kms.schedule_key_deletion(KeyId=bare(arn), PendingWindowInDays=7)
    with pytest.raises(WalletKeyError) as err:
        load_signer(settings_for(tmp_path, ton_master_key=envelope))
    assert err.value.code == "wallet_key_kms_disabled"
    assert arn in err.value.message
    assert ("disabled" if how == "disable" else "pending deletion") in err.value.message
    assert SEED.hex() not in err.value.message


class _Counting(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(503)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


async def test_the_worker_sends_nothing_with_a_disabled_kms_key(
    kms: Any, tmp_path: Path, db: Database
) -> None:
    """`tonrail worker` opens the TON rail with `open_ton_rail`: a refused KMS key stops it
    before any request leaves for toncenter (the loops idle with the error's message)."""
    arn = new_key(kms)
    envelope = seal(SEED, KmsKek(kms_client(settings_for(tmp_path)), arn))
    kms.disable_key(KeyId=bare(arn))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    _Counting.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    s = settings_for(
        tmp_path,
        ton_master_key=envelope,
        ton_network="testnet",
        ton_api_url=f"{url}/api/v2",
        ton_api_v3_url=f"{url}/api/v3",
    )
    try:
        with pytest.raises(WalletKeyError) as err:
            await open_ton_rail(s, db, PaymentService(db, s), "w-kms")
    finally:
        server.shutdown()
    assert err.value.code == "wallet_key_kms_disabled"
    assert _Counting.seen == []


def test_a_blob_without_its_key_id_or_ciphertext_is_refused(kms: Any, tmp_path: Path) -> None:
    kek = KmsKek(kms_client(settings_for(tmp_path)), new_key(kms))
    body = body_of(seal(SEED, kek))
    for broken in ({**body["kek"], "key_id": ""}, {**body["kek"], "wrapped": "%%"}):
        with pytest.raises(WalletKeyError):
            load_signer(settings_for(tmp_path, ton_master_key=envelope_of({**body, "kek": broken})))


# --- tonrail keys init-wallet / rewrap


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, kms: Any
) -> Iterator[Path]:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("TON_KEY_PASSPHRASE", "old passphrase")
    monkeypatch.delenv("TON_MASTER_KEY", raising=False)
    monkeypatch.delenv("TON_KEY_KMS_KEY_ID", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def invoke(args: list[str], stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, args, input=stdin)


async def test_rewrap_passphrase_to_kms_to_kms_to_passphrase(
    cli_env: Path, kms: Any, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = new_key(kms), new_key(kms)
    made = await asyncio.to_thread(invoke, ["keys", "init-wallet"])
    assert made.exit_code == 0, made.output
    path = cli_env / "hot_wallet.key"
    before = body_of(path.read_text().strip())
    wallet = load_signer(get_settings()).public_key

    steps: list[tuple[list[str], str | None]] = [
        (["keys", "rewrap", "--to-kms", first], None),
        (["keys", "rewrap", "--to-kms", second], None),
        (["keys", "rewrap", "--to-passphrase"], "new passphrase\n"),
    ]
    for args, stdin in steps:
        out = await asyncio.to_thread(invoke, args, stdin)
        assert out.exit_code == 0, out.output
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        body = body_of(path.read_text().strip())
        # Same wallet, same data key ciphertext: only the wrapping changed.
        assert (body["public_key"], body["nonce"], body["ciphertext"]) == (
            before["public_key"],
            before["nonce"],
            before["ciphertext"],
        )
        if "--to-kms" in args:
            assert body["kek"]["kind"] == "aws-kms" and body["kek"]["key_id"] == args[-1]
            assert load_signer(get_settings()).public_key == wallet

    kms.disable_key(KeyId=bare(first))
    kms.disable_key(KeyId=bare(second))  # the envelope no longer needs either KMS key
    monkeypatch.setenv("TON_KEY_PASSPHRASE", "new passphrase")
    get_settings.cache_clear()
    assert load_signer(get_settings()).public_key == wallet
    with pytest.raises(WalletKeyError):
        open_envelope(path.read_text(), PassphraseKek("old passphrase"))

    async with db.transaction() as session:
        entries = await recent(session, action_prefix="wallet_key.")
        assert (await verify(session)).ok
    assert [(e.action, e.subject, e.details["to"]) for e in reversed(entries)] == [
        ("wallet_key.rewrapped", wallet.hex(), f"aws-kms:{first}"),
        ("wallet_key.rewrapped", wallet.hex(), f"aws-kms:{second}"),
        ("wallet_key.rewrapped", wallet.hex(), "scrypt"),
    ]
    assert all("passphrase" not in json.dumps(e.details) for e in entries)


async def test_rewrap_refuses_without_the_old_key_and_changes_nothing(
    cli_env: Path, kms: Any, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await asyncio.to_thread(invoke, ["keys", "init-wallet"])
    assert made.exit_code == 0, made.output
    path = cli_env / "hot_wallet.key"
    original = path.read_text()
    monkeypatch.setenv("TON_KEY_PASSPHRASE", "a wrong passphrase")
    get_settings.cache_clear()
    out = await asyncio.to_thread(invoke, ["keys", "rewrap", "--to-kms", new_key(kms)])
    assert out.exit_code == 2 and "wrong passphrase" in out.output
    disabled = new_key(kms)
    kms.disable_key(KeyId=bare(disabled))
    monkeypatch.setenv("TON_KEY_PASSPHRASE", "old passphrase")
    get_settings.cache_clear()
    out = await asyncio.to_thread(invoke, ["keys", "rewrap", "--to-kms", disabled])
    assert out.exit_code == 2 and "disabled" in out.output
    assert path.read_text() == original
    both = await asyncio.to_thread(invoke, ["keys", "rewrap"])
    assert both.exit_code == 2
    async with db.transaction() as session:
        assert await recent(session, action_prefix="wallet_key.") == []


async def test_init_wallet_seals_under_kms_when_configured(
    cli_env: Path,
    kms: Any,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # botocore would log the data key at DEBUG
    arn = new_key(kms)
    monkeypatch.setenv("TON_KEY_KMS_KEY_ID", arn)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.delenv("TON_KEY_PASSPHRASE")
    get_settings.cache_clear()
    made = await asyncio.to_thread(invoke, ["keys", "init-wallet"])
    assert made.exit_code == 0, made.output
    assert "KEK: AWS KMS" in made.output
    body = body_of((cli_env / "hot_wallet.key").read_text().strip())
    assert body["kek"]["kind"] == "aws-kms" and body["kek"]["key_id"] == arn
    assert load_signer(get_settings()).public_key.hex() == body["public_key"]
    assert "Plaintext" not in caplog.text  # neither the Encrypt request nor Decrypt's answer
