"""Hot wallet rotation with AWS KMS as the key-encryption key (TON_KEY_KMS_KEY_ID set), in
moto: the new wallet's `<key file>.next` is an aws-kms envelope whose data key KMS wrapped
under the configured key and the NEW wallet's encryption context; after a full rotation on the
local network the key file holds it and the loader and the worker open it with kms:Decrypt;
a disabled KMS key stops the command before it writes anything."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from tests.rails.ton.rail_fixture import Rail
from tests.rails.ton.test_kms_kek import REGION, bare, body_of, kms, new_key
from tests.rails.ton.test_payouts import _opening_balances
from tests.rails.ton.test_wallet_rotation import (
    cli_env,
    invoke,
    key_files,
    read,
    rotations,
)
from tests.rails.ton.test_wallet_rotation_sweep import (
    ACTOR,
    drained,
    finish_rotation,
    rotation_settings,
    row_of,
)
from tonrail.db import Database
from tonrail.processing import wallet_rotation as rot
from tonrail.processing.ton_runtime import adopt_rotated_wallet
from tonrail.rails.ton import keys
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.keys import WalletKeyError
from tonrail.rails.ton.kms_kek import KmsKek, context, kms_client
from tonrail.security.audit_log import recent
from tonrail.settings import get_settings

__all__ = ["cli_env", "kms"]  # fixtures, used by name


async def test_a_rotation_under_kms_seals_the_new_key_for_the_new_wallet_and_switches_to_it(
    rail: Rail, db: Database, tmp_path: Path, kms: Any
) -> None:
    arn = new_key(kms)
    s = rotation_settings(rail, tmp_path).model_copy(
        update={"ton_key_kms_key_id": arn, "aws_region": REGION}
    )
    old_envelope = read(tmp_path / "hot_wallet.key")  # the old wallet's, under the passphrase
    assert keys.parse_envelope(old_envelope)["kek"]["kind"] == "scrypt"
    await _opening_balances(rail, db)

    v = await drained(db, s)
    assert v.state == "drained"
    next_path = Path(v.new_key_file)
    assert next_path == tmp_path / "hot_wallet.key.next"
    sealed = read(next_path)
    body = body_of(sealed)
    # (1) an aws-kms envelope of the new key, its data key wrapped under the configured key...
    assert body["public_key"] == v.new_public_key != v.old_public_key
    assert body["kek"]["kind"] == "aws-kms" and body["kek"]["key_id"] == arn
    assert "scrypt" not in sealed
    wrapped = base64.b64decode(body["kek"]["wrapped"])
    # ...by kms:Encrypt with the new wallet's encryption context: KMS itself says which key
    # made the blob and opens it only with that context.
    answer = kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=context(v.new_public_key))
    assert answer["KeyId"] == arn and len(answer["Plaintext"]) == 32
    kek = KmsKek(kms_client(s), arn)
    with pytest.raises(WalletKeyError) as wrong_wallet:
        kek.unwrap(body["kek"], v.old_public_key)  # the old wallet's context
    assert wrong_wallet.value.code == "wallet_key_kms_refused"
    new_seed = keys.open_envelope(sealed, keys.kek_for(s, body["kek"]))
    assert raw(rot.wallet_of(s, keys.HotWalletSigner(new_seed).public_key).address) == (
        v.new_wallet
    )
    del new_seed
    async with db.transaction() as session:
        created = (await recent(session, action_prefix="hot_wallet.rotation_created"))[0]
    assert created.details["kek"] == "aws-kms"

    # The rest of the rotation on the local network: sweep, deployment, switch.
    w = await rot.open_wallets(s, v)
    try:
        v = await rot.sign_sweep(db, s, w, v.id, ACTOR)
        v = await finish_rotation(db, s, w, v)
    finally:
        await w.aclose()
    assert v.state == "switched"

    # (2) the key file holds the new envelope; the old one is kept beside it.
    assert read(tmp_path / "hot_wallet.key") == sealed
    retired = tmp_path / f"hot_wallet.key{rot.RETIRED_SUFFIX}{v.old_public_key[:16]}"
    assert read(retired) == old_envelope
    # The loader opens it with kms:Decrypt (no passphrase needed): the new wallet.
    no_passphrase = s.model_copy(update={"ton_key_passphrase": s.ton_key_passphrase.__class__("")})
    signer = keys.load_signer(no_passphrase)
    assert raw(rot.wallet_of(s, signer.public_key).address) == v.new_wallet
    # The worker adopts it the same way and signs with the new wallet.
    rail.ctx.settings = no_passphrase
    row = await row_of(db, v.id)
    assert await adopt_rotated_wallet(rail.ctx, row.id, row.new_public_key)
    assert rail.ctx.wallet_raw == v.new_wallet
    # It really is KMS that opens it: with the key disabled the loader is refused.
    kms.disable_key(KeyId=bare(arn))
    with pytest.raises(WalletKeyError) as disabled:
        keys.load_signer(no_passphrase)
    assert disabled.value.code == "wallet_key_kms_disabled"


async def test_a_disabled_kms_key_stops_the_rotation_before_anything_is_written(
    cli_env: Path, db: Database, kms: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = new_key(kms)
    kms.disable_key(KeyId=bare(arn))
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("TON_KEY_KMS_KEY_ID", arn)
    get_settings.cache_clear()
    before = read(cli_env / "hot_wallet.key")
    out = await asyncio.to_thread(invoke, ["--confirm", rot.CONFIRMATION])
    assert out.exit_code == 2, out.output
    assert "disabled" in out.output and arn in out.output
    assert "wallet_key_kms_disabled" in out.output
    assert await rotations(db) == []
    assert key_files(cli_env) == ["hot_wallet.key"]  # no .next, nothing else
    assert read(cli_env / "hot_wallet.key") == before
    async with db.transaction() as session:
        assert await recent(session, action_prefix="hot_wallet.") == []
