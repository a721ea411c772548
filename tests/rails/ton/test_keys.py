"""The hot wallet key: envelope encryption, the signer, the loader and `keys init-wallet`."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import VerifyKey
from ton_core import Address
from ton_core.crypto.keys import mnemonic_new
from tonutils.contracts import WalletV4R2
from typer.testing import CliRunner

from tonrail.cli import app
from tonrail.errors import TonrailError
from tonrail.rails.ton import keys
from tonrail.rails.ton.keys import (
    DEV_PASSPHRASE,
    ENVELOPE_PREFIX,
    HotWalletSigner,
    PassphraseKek,
    WalletKeyError,
    load_signer,
    open_envelope,
    seal,
)
from tonrail.settings import Settings, get_settings

FAST = {"n": 2**14}  # the minimum accepted; keeps the tests quick (the default is tested once)
SEED = bytes(range(32))


def kek(passphrase: str = "correct horse battery staple") -> PassphraseKek:
    return PassphraseKek(passphrase, **FAST)


def body_of(envelope: str) -> dict[str, object]:
    text = envelope[len(ENVELOPE_PREFIX) :]
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))  # type: ignore[no-any-return]


def envelope_of(body: dict[str, object]) -> str:
    raw = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return ENVELOPE_PREFIX + raw


def flip(b64: object) -> str:
    assert isinstance(b64, str)
    data = bytearray(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))
    data[0] ^= 1
    return base64.urlsafe_b64encode(bytes(data)).rstrip(b"=").decode()


def test_round_trip_with_default_parameters() -> None:
    strong = PassphraseKek("correct horse battery staple")
    envelope = seal(SEED, strong)
    assert envelope.startswith(ENVELOPE_PREFIX) and envelope.isprintable() and " " not in envelope
    assert SEED.hex() not in envelope
    blob = body_of(envelope)["kek"]
    assert isinstance(blob, dict)
    assert (blob["kind"], blob["n"], blob["r"], blob["p"]) == ("scrypt", 2**17, 8, 1)
    assert open_envelope(envelope, strong) == SEED
    assert keys.envelope_public_key(envelope) == HotWalletSigner(SEED).public_key
    # A fresh KEK object with the same passphrase opens it: salt and parameters are stored.
    assert open_envelope(envelope, PassphraseKek("correct horse battery staple")) == SEED


def test_each_seal_is_different() -> None:
    a, b = seal(SEED, kek()), seal(SEED, kek())
    assert a != b
    assert body_of(a)["nonce"] != body_of(b)["nonce"]
    assert open_envelope(a, kek()) == open_envelope(b, kek()) == SEED


def test_wrong_passphrase() -> None:
    envelope = seal(SEED, kek())
    with pytest.raises(WalletKeyError) as err:
        open_envelope(envelope, kek("hunter2-guess"))
    assert err.value.code == "wallet_key_invalid"
    assert isinstance(err.value, TonrailError)
    shown = repr(err.value.to_dict()) + str(err.value)
    assert "hunter2" not in shown and "correct horse" not in shown


@pytest.mark.parametrize(
    "field",
    ["ciphertext", "nonce", "kek.wrapped", "kek.nonce", "kek.salt", "public_key", "kek.n"],
)
def test_tampering_is_detected(field: str) -> None:
    body = body_of(seal(SEED, kek()))
    if field == "public_key":
        body["public_key"] = bytes(HotWalletSigner(b"\x07" * 32).public_key).hex()
    elif field == "kek.n":
        assert isinstance(body["kek"], dict)
        body["kek"]["n"] = 2**15
    elif field.startswith("kek."):
        assert isinstance(body["kek"], dict)
        body["kek"][field[4:]] = flip(body["kek"][field[4:]])
    else:
        body[field] = flip(body[field])
    with pytest.raises(WalletKeyError):
        open_envelope(envelope_of(body), kek())


@pytest.mark.parametrize(
    "envelope",
    [
        "",
        "tonrail-key:v2:abc",
        ENVELOPE_PREFIX + "%%%",
        ENVELOPE_PREFIX + "bm90IGpzb24",
        envelope_of({"v": 2, "purpose": "ton-hot-wallet"}),
    ],
)
def test_garbage_envelopes(envelope: str) -> None:
    with pytest.raises(WalletKeyError):
        open_envelope(envelope, kek())


def test_dangerous_scrypt_parameters_are_refused() -> None:
    body = body_of(seal(SEED, kek()))
    assert isinstance(body["kek"], dict)
    body["kek"]["n"] = 2**30  # would ask for 1 TiB of memory
    with pytest.raises(WalletKeyError, match="scrypt"):
        open_envelope(envelope_of(body), kek())
    with pytest.raises(WalletKeyError):
        PassphraseKek("x", n=2**10)


def test_signer_signs_and_hides_the_key() -> None:
    signer = HotWalletSigner(SEED)
    sig = signer.sign(b"cell hash")
    VerifyKey(signer.public_key).verify(b"cell hash", sig)
    assert len(sig) == 64 and len(signer.public_key) == 32
    for text in (repr(signer), str(signer), f"{signer}"):
        assert SEED.hex() not in text and signer.public_key.hex() in text
    assert not hasattr(signer, "__dict__")
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(signer)


def test_mnemonic_import_matches_tonutils() -> None:
    words = mnemonic_new(24)
    _, public, private, _ = WalletV4R2.from_mnemonic(None, words)  # type: ignore[arg-type]
    seed = keys.seed_from_import("\n  " + "  ".join(words).upper() + "\n")
    assert seed == private.as_bytes[:32]
    assert HotWalletSigner(seed).public_key == public.as_bytes
    assert keys.seed_from_import(SEED.hex() + "\n") == SEED
    for bad in ("abandon " * 24, "zz" * 32, "", " ".join(words[:12])):
        with pytest.raises(WalletKeyError) as err:
            keys.seed_from_import(bad)
        assert err.value.code == "wallet_key_import_invalid"


# --- loading from settings


def settings_for(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]


def test_load_from_file_and_from_env(tmp_path: Path) -> None:
    s = settings_for(tmp_path, ton_key_passphrase="pw-1")
    envelope = seal(SEED, PassphraseKek("pw-1", **FAST))
    with pytest.raises(WalletKeyError) as err:
        load_signer(s)
    assert err.value.code == "wallet_key_missing"
    keys.write_envelope(keys.key_file_path(s), envelope)
    assert keys.key_file_path(s) == tmp_path / "hot_wallet.key"
    assert load_signer(s).public_key == HotWalletSigner(SEED).public_key

    other = seal(b"\x09" * 32, PassphraseKek("pw-1", **FAST))
    inline = settings_for(tmp_path, ton_key_passphrase="pw-1", ton_master_key=other)
    assert load_signer(inline).public_key == HotWalletSigner(b"\x09" * 32).public_key

    elsewhere = tmp_path / "keys" / "hot.key"
    keys.write_envelope(elsewhere, other)
    s2 = settings_for(tmp_path, ton_key_passphrase="pw-1", ton_master_key_file=str(elsewhere))
    assert load_signer(s2).public_key == HotWalletSigner(b"\x09" * 32).public_key
    with pytest.raises(WalletKeyError):
        load_signer(settings_for(tmp_path, ton_key_passphrase="pw-2"))


def test_dev_passphrase_only_outside_production(tmp_path: Path) -> None:
    envelope = seal(SEED, PassphraseKek(DEV_PASSPHRASE, **FAST))
    dev = settings_for(tmp_path, environment="development", ton_master_key=envelope)
    assert load_signer(dev).public_key == HotWalletSigner(SEED).public_key
    for values in ({}, {"ton_key_passphrase": DEV_PASSPHRASE}):
        prod = settings_for(
            tmp_path,
            environment="production",
            jwt_secret="j" * 40,
            ton_master_key=envelope,
            **values,
        )
        with pytest.raises(WalletKeyError) as err:
            load_signer(prod)
        assert err.value.code in ("wallet_key_passphrase_missing", "wallet_key_passphrase_insecure")
        assert DEV_PASSPHRASE not in err.value.message


def test_write_envelope_is_private_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "hot_wallet.key"
    old = os.umask(0o022)
    try:
        keys.write_envelope(path, "tonrail-key:v1:first")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(WalletKeyError) as err:
        keys.write_envelope(path, "tonrail-key:v1:second")
    assert err.value.code == "wallet_key_exists"
    assert path.read_text().strip() == "tonrail-key:v1:first"
    keys.write_envelope(path, "tonrail-key:v1:second", force=True)
    assert path.read_text().strip() == "tonrail-key:v1:second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["hot_wallet.key"]  # no temp files left


# --- the CLI


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TON_KEY_PASSPHRASE", "cli passphrase")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.delenv("TON_MASTER_KEY", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_init_wallet_creates_a_key(
    cli_env: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(app, ["keys", "init-wallet"])
    assert result.exit_code == 0, result.output
    path = cli_env / "hot_wallet.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    signer = load_signer(get_settings())
    assert f"public key: {signer.public_key.hex()}" in result.output
    assert str(path) in result.output
    seed = open_envelope(path.read_text(), PassphraseKek("cli passphrase"))
    seen = result.output + capsys.readouterr().out + caplog.text
    assert "hot_wallet_key_written" in seen  # the log line was captured, and ...
    assert seed.hex() not in seen and seed.hex().upper() not in seen  # ... holds no seed
    assert "cli passphrase" not in seen

    again = CliRunner().invoke(app, ["keys", "init-wallet"])
    assert again.exit_code == 2 and "--force" in again.output
    assert load_signer(get_settings()).public_key == signer.public_key  # untouched
    forced = CliRunner().invoke(app, ["keys", "init-wallet", "--force"])
    assert forced.exit_code == 0, forced.output
    assert load_signer(get_settings()).public_key != signer.public_key


def test_init_wallet_imports_a_mnemonic_from_stdin(
    cli_env: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    words = mnemonic_new(24)
    _, public, private, _ = WalletV4R2.from_mnemonic(None, words)  # type: ignore[arg-type]
    result = CliRunner().invoke(
        app, ["keys", "init-wallet", "--import"], input=" ".join(words) + "\n"
    )
    assert result.exit_code == 0, result.output
    assert f"public key: {public.as_hex}" in result.output
    seen = result.output + capsys.readouterr().out + caplog.text
    assert private.as_bytes[:32].hex() not in seen
    flat = " ".join(seen.split()).lower()
    for i in range(len(words) - 2):
        assert " ".join(words[i : i + 3]) not in flat  # no run of the mnemonic, anywhere
    assert load_signer(get_settings()).public_key == public.as_bytes


def test_init_wallet_import_hex_and_bad_input(cli_env: Path) -> None:
    result = CliRunner().invoke(
        app, ["keys", "init-wallet", "--import", "--file", str(cli_env / "k")], input=SEED.hex()
    )
    assert result.exit_code == 0, result.output
    assert HotWalletSigner(SEED).public_key.hex() in result.output
    assert SEED.hex() not in result.output
    bad = CliRunner().invoke(
        app, ["keys", "init-wallet", "--import", "--file", str(cli_env / "k2")], input="nope\n"
    )
    assert bad.exit_code == 2 and "mnemonic" in bad.output
    assert not (cli_env / "k2").exists()


def test_init_wallet_refuses_the_dev_passphrase_in_production(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", "j" * 40)
    monkeypatch.delenv("TON_KEY_PASSPHRASE")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["keys", "init-wallet"])
    assert result.exit_code == 2
    assert "TON_KEY_PASSPHRASE" in result.output
    assert not (cli_env / "hot_wallet.key").exists()


def test_payment_processor_address_must_be_the_hot_wallet(tmp_path: Path) -> None:
    """Invoices' pay_to is PAYMENT_PROCESSOR_ADDRESS; the watcher watches the hot wallet: a
    config where they differ is refused when the rail opens (issue 17)."""
    from tonrail.processing.ton_runtime import check_payment_processor_address

    settings = settings_for(tmp_path)
    hot = "0:" + "AB" * 32
    friendly = Address(hot).to_str(is_user_friendly=True, is_bounceable=True)
    for same in ("", friendly, hot.lower()):
        check_payment_processor_address(
            settings.model_copy(update={"payment_processor_address": same}), hot
        )
    other = settings.model_copy(update={"payment_processor_address": "0:" + "CD" * 32})
    with pytest.raises(WalletKeyError, match="PAYMENT_PROCESSOR_ADDRESS is not the hot wallet"):
        check_payment_processor_address(other, hot)
