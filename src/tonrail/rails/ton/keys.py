"""The hot wallet key: encrypted at rest in an envelope, decrypted only into the signer.

Envelope (one printable line, for TON_MASTER_KEY or a file): `tonrail-key:v1:` followed by
base64url (no padding) of a JSON object:

    {"v": 1, "purpose": "ton-hot-wallet", "public_key": "<hex>",
     "nonce": "<b64url 12 bytes>", "ciphertext": "<b64url seed + GCM tag>",
     "kek": {"kind": "scrypt", "salt": ..., "n": ..., "r": ..., "p": ...,
             "nonce": ..., "wrapped": ...}}

A random 256-bit data key (DEK) encrypts the 32-byte Ed25519 seed with AES-256-GCM; the
associated data binds version, purpose and public key, so none can be swapped. The DEK is
wrapped by a key-encryption key (KEK) behind the `KeyEncryptionKey` protocol: `PassphraseKek`
(scrypt) or `KmsKek` (AWS KMS, rails/ton/kms_kek.py, with an encryption context naming the
wallet). `rewrap` moves an envelope to another KEK without touching the wallet's key. A wrong
passphrase, a refused KMS call or any tampering raises WalletKeyError.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from nacl.signing import SigningKey

from tonrail.rails.ton.kms_kek import kms_kek
from tonrail.rails.ton.wallet_key_error import DEK_BYTES as DEK_BYTES
from tonrail.rails.ton.wallet_key_error import PURPOSE as PURPOSE
from tonrail.rails.ton.wallet_key_error import WalletKeyError as WalletKeyError
from tonrail.settings import Settings

ENVELOPE_PREFIX = "tonrail-key:v1:"
SEED_BYTES = 32
NONCE_BYTES = 12
SALT_BYTES = 16
# scrypt: N=2^17, r=8, p=1 is 128 MiB of memory and about 0.37 s on a 2-vCPU machine; the
# OWASP recommendation for scrypt. Envelopes carry their own parameters, so this can rise.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
# What an envelope may ask for: refuses weak parameters and memory-exhaustion ones alike.
SCRYPT_MIN_N = 2**14
SCRYPT_MAX_N = 2**20
SCRYPT_MAX_R = 16
SCRYPT_MAX_P = 4
# Embedded development mode only; refused when ENVIRONMENT=production.
DEV_PASSPHRASE = "tonrail-development-passphrase-NOT-SECRET"  # noqa: S105 (labelled dev default)
KEY_FILE_NAME = "hot_wallet.key"


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise WalletKeyError(f"key envelope: {what} is missing")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise WalletKeyError(f"key envelope: {what} is not base64url") from None


class KeyEncryptionKey(Protocol):
    """Wraps and unwraps data keys; `kind` names it in the envelope (e.g. "scrypt", "aws-kms")."""

    kind: str

    def wrap(self, dek: bytes, wallet: str) -> dict[str, Any]:
        """A JSON-able blob from which `unwrap` gives `dek` back; `wallet` is the wallet's
        public key (hex), which a KEK may bind the blob to."""
        ...

    def unwrap(self, blob: dict[str, Any], wallet: str) -> bytes:
        """The data key; WalletKeyError if the blob is not ours or was altered."""
        ...


class PassphraseKek:
    """KEK derived from a passphrase with scrypt; salt and n/r/p are stored in the blob."""

    kind = "scrypt"
    _AAD = b"tonrail-kek:v1:scrypt"

    def __init__(
        self, passphrase: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
    ) -> None:
        if not passphrase:
            raise WalletKeyError(
                "the key passphrase is empty", code="wallet_key_passphrase_missing"
            )
        _check_scrypt(n, r, p)
        self._passphrase = passphrase.encode()
        self.n, self.r, self.p = n, r, p

    def __repr__(self) -> str:
        return f"PassphraseKek(n={self.n}, r={self.r}, p={self.p})"

    def _derive(self, salt: bytes, n: int, r: int, p: int) -> bytes:
        return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(self._passphrase)

    def wrap(self, dek: bytes, wallet: str = "") -> dict[str, Any]:
        salt, nonce = secrets.token_bytes(SALT_BYTES), secrets.token_bytes(NONCE_BYTES)
        kek = self._derive(salt, self.n, self.r, self.p)
        wrapped = AESGCM(kek).encrypt(nonce, dek, self._AAD)
        return {
            "kind": self.kind,
            "salt": _b64e(salt),
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "nonce": _b64e(nonce),
            "wrapped": _b64e(wrapped),
        }

    def unwrap(self, blob: dict[str, Any], wallet: str = "") -> bytes:
        if blob.get("kind") != self.kind:
            raise WalletKeyError(f"key envelope: KEK kind {blob.get('kind')!r} is not scrypt")
        n, r, p = blob.get("n"), blob.get("r"), blob.get("p")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p)):
            raise WalletKeyError("key envelope: scrypt parameters are missing")
        assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
        _check_scrypt(n, r, p)
        salt = _b64d(blob.get("salt"), "salt")
        nonce = _b64d(blob.get("nonce"), "KEK nonce")
        if len(salt) < SALT_BYTES or len(nonce) != NONCE_BYTES:
            raise WalletKeyError("key envelope: bad salt or KEK nonce length")
        kek = self._derive(salt, n, r, p)
        try:
            dek = AESGCM(kek).decrypt(nonce, _b64d(blob.get("wrapped"), "wrapped key"), self._AAD)
        except InvalidTag:
            raise WalletKeyError(
                "cannot unwrap the wallet key: wrong passphrase or altered envelope"
            ) from None
        if len(dek) != DEK_BYTES:
            raise WalletKeyError("key envelope: the data key has the wrong length")
        return dek


def _check_scrypt(n: int, r: int, p: int) -> None:
    if n < SCRYPT_MIN_N or n > SCRYPT_MAX_N or n & (n - 1):
        raise WalletKeyError(f"scrypt n must be a power of two in [2^14, 2^20], not {n}")
    if not (1 <= r <= SCRYPT_MAX_R and 1 <= p <= SCRYPT_MAX_P):
        raise WalletKeyError("scrypt r or p out of range")


def _aad(public_key_hex: str) -> bytes:
    return f"{ENVELOPE_PREFIX}{PURPOSE}:{public_key_hex}".encode()


def seal(seed: bytes, kek: KeyEncryptionKey) -> str:
    """Encrypt a 32-byte Ed25519 seed into a one-line envelope."""
    if len(seed) != SEED_BYTES:
        raise WalletKeyError("a wallet seed is 32 bytes")
    public_key_hex = bytes(SigningKey(seed).verify_key).hex()
    dek, nonce = secrets.token_bytes(DEK_BYTES), secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(dek).encrypt(nonce, seed, _aad(public_key_hex))
    body = {
        "v": 1,
        "purpose": PURPOSE,
        "public_key": public_key_hex,
        "nonce": _b64e(nonce),
        "ciphertext": _b64e(ciphertext),
        "kek": kek.wrap(dek, public_key_hex),
    }
    return ENVELOPE_PREFIX + _b64e(json.dumps(body, separators=(",", ":")).encode())


def parse_envelope(envelope: str) -> dict[str, Any]:
    """The envelope's JSON (nothing secret in clear: the seed and the DEK stay encrypted)."""
    text = envelope.strip()
    if not text.startswith(ENVELOPE_PREFIX):
        raise WalletKeyError("not a tonrail key envelope (expected tonrail-key:v1:...)")
    try:
        body = json.loads(_b64d(text[len(ENVELOPE_PREFIX) :], "envelope"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WalletKeyError("key envelope: the body is not JSON") from None
    if not isinstance(body, dict) or body.get("v") != 1 or body.get("purpose") != PURPOSE:
        raise WalletKeyError("key envelope: unknown version or purpose")
    if not isinstance(body.get("kek"), dict) or not isinstance(body.get("public_key"), str):
        raise WalletKeyError("key envelope: KEK blob or public key missing")
    return body


def rewrap(envelope: str, old: KeyEncryptionKey, new: KeyEncryptionKey) -> str:
    """The same envelope (same wallet key, same data key and ciphertext) with its data key
    wrapped by `new` instead of `old`; the result is opened with `new` before it is returned."""
    body = parse_envelope(envelope)
    dek = old.unwrap(body["kek"], body["public_key"])
    body["kek"] = new.wrap(dek, body["public_key"])
    del dek
    out = ENVELOPE_PREFIX + _b64e(json.dumps(body, separators=(",", ":")).encode())
    open_envelope(out, new)
    return out


def envelope_public_key(envelope: str) -> bytes:
    """The public key recorded in an envelope, without decrypting it (not authenticated)."""
    try:
        return bytes.fromhex(parse_envelope(envelope)["public_key"])
    except ValueError:
        raise WalletKeyError("key envelope: public key is not hex") from None


def open_envelope(envelope: str, kek: KeyEncryptionKey) -> bytes:
    """The 32-byte seed inside `envelope`; WalletKeyError on a wrong KEK or any alteration."""
    body = parse_envelope(envelope)
    dek = kek.unwrap(body["kek"], body["public_key"])
    nonce = _b64d(body.get("nonce"), "nonce")
    if len(nonce) != NONCE_BYTES:
        raise WalletKeyError("key envelope: bad nonce length")
    try:
        seed = AESGCM(dek).decrypt(
            nonce, _b64d(body.get("ciphertext"), "ciphertext"), _aad(body["public_key"])
        )
    except InvalidTag:
        raise WalletKeyError("cannot decrypt the wallet key: the envelope was altered") from None
    if len(seed) != SEED_BYTES or bytes(SigningKey(seed).verify_key).hex() != body["public_key"]:
        raise WalletKeyError("key envelope: the key does not match its public key")
    return seed


class HotWalletSigner:
    """Holds the decrypted hot wallet key and signs with it; never shows the key."""

    __slots__ = ("__key", "_public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise WalletKeyError("a wallet seed is 32 bytes")
        self.__key = SigningKey(seed)
        self._public_key = bytes(self.__key.verify_key)

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data` (for TON wallets: a cell hash)."""
        return bytes(self.__key.sign(data).signature)

    def __repr__(self) -> str:
        return f"HotWalletSigner(public_key={self._public_key.hex()})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("HotWalletSigner cannot be pickled")


def mnemonic_to_seed(words: list[str]) -> bytes:
    """The Ed25519 seed of a 24-word TON mnemonic (TON's own derivation, as wallets do)."""
    from ton_core.contrib.utils import ton_mnemonic_is_valid
    from ton_core.crypto.keys import mnemonic_to_private_key

    normalized = [w.strip().lower() for w in words if w.strip()]
    if len(normalized) != 24 or not ton_mnemonic_is_valid(normalized):
        raise WalletKeyError("not a valid 24-word TON mnemonic", code="wallet_key_import_invalid")
    _, private = mnemonic_to_private_key(normalized)
    return bytes(private[:SEED_BYTES])


def seed_from_import(text: str) -> bytes:
    """A seed from imported text: 64 hex characters or a 24-word TON mnemonic."""
    stripped = text.strip()
    if len(stripped) == 2 * SEED_BYTES:
        try:
            return bytes.fromhex(stripped)
        except ValueError:
            pass
    words = stripped.split()
    if len(words) > 1:
        return mnemonic_to_seed(words)
    raise WalletKeyError(
        "expected a 24-word TON mnemonic or a 64-hex seed", code="wallet_key_import_invalid"
    )


def key_file_path(settings: Settings) -> Path:
    """TON_MASTER_KEY_FILE, or DATA_DIR/hot_wallet.key."""
    if settings.ton_master_key_file.strip():
        return Path(settings.ton_master_key_file.strip()).expanduser()
    return settings.data_dir / KEY_FILE_NAME


def passphrase_kek(settings: Settings, **params: int) -> PassphraseKek:
    """The passphrase KEK from TON_KEY_PASSPHRASE; the dev default only outside production.
    Asked only for a `scrypt` envelope (or to seal one without TON_KEY_KMS_KEY_ID): an
    `aws-kms` envelope never needs the passphrase."""
    passphrase = settings.ton_key_passphrase.get_secret_value()
    production = settings.environment == "production"
    if not passphrase:
        if production:
            raise WalletKeyError(
                "TON_KEY_PASSPHRASE is required in production for a hot wallet key sealed with "
                "a scrypt passphrase (an aws-kms envelope, TON_KEY_KMS_KEY_ID, needs none)",
                code="wallet_key_passphrase_missing",
            )
        passphrase = DEV_PASSPHRASE
    elif production and passphrase == DEV_PASSPHRASE:
        raise WalletKeyError(
            "the development passphrase is refused in production",
            code="wallet_key_passphrase_insecure",
        )
    return PassphraseKek(passphrase, **params)


def kek_for(settings: Settings, blob: dict[str, Any]) -> KeyEncryptionKey:
    """The KEK that can unwrap `blob` with this configuration."""
    if blob.get("kind") == PassphraseKek.kind:
        return passphrase_kek(settings)
    if blob.get("kind") == "aws-kms":
        key_id = blob.get("key_id")
        if not isinstance(key_id, str) or not key_id:
            raise WalletKeyError("key envelope: the KMS key id is missing")
        return kms_kek(settings, key_id)
    raise WalletKeyError(f"key envelope: KEK kind {blob.get('kind')!r} is not supported")


def read_envelope(settings: Settings) -> str:
    """The envelope from TON_MASTER_KEY, else from the key file."""
    inline = settings.ton_master_key.get_secret_value().strip()
    if inline:
        return inline
    path = key_file_path(settings)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise WalletKeyError(
            f"no hot wallet key: TON_MASTER_KEY is empty and {path} does not exist "
            "(create one with `tonrail keys init-wallet`)",
            code="wallet_key_missing",
        ) from None


def sealing_kek(settings: Settings) -> KeyEncryptionKey:
    """The KEK new envelopes are sealed with: TON_KEY_KMS_KEY_ID when set, else the passphrase."""
    if settings.ton_key_kms_key_id.strip():
        return kms_kek(settings, settings.ton_key_kms_key_id.strip())
    return passphrase_kek(settings)


def load_signer(settings: Settings) -> HotWalletSigner:
    """Decrypt the hot wallet key (TON_MASTER_KEY or its file) into a signer: the KEK is
    asked once (one kms:Decrypt for aws-kms); the seed then lives only in the signer."""
    envelope = read_envelope(settings)
    body = parse_envelope(envelope)
    return HotWalletSigner(open_envelope(envelope, kek_for(settings, body["kek"])))


def write_envelope(path: Path, envelope: str, *, force: bool = False) -> None:
    """Write the envelope with mode 0600, atomically; refuse to replace one unless `force`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not force:
        raise WalletKeyError(f"{path} exists; pass --force to replace it", code="wallet_key_exists")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(envelope + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
