"""AWS KMS as the key-encryption key of the hot wallet envelope (kind `aws-kms`).

The data key is wrapped with `kms:Encrypt` and unwrapped with `kms:Decrypt`, both under the
encryption context {"tonrail:purpose": "ton-hot-wallet", "tonrail:wallet": <public key hex>}:
a wrapped key moved into another wallet's envelope does not open. The blob keeps the key's ARN
and the ciphertext; the plaintext data key exists only in this process's memory. KMS refusals
(disabled key, key pending deletion, grant revoked, wrong context) become a WalletKeyError
that says which, so the worker stays idle with a clear message and signs nothing.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tonrail.aws_secrets import quiet_botocore
from tonrail.rails.ton.wallet_key_error import DEK_BYTES, PURPOSE, WalletKeyError
from tonrail.settings import Settings

KIND = "aws-kms"

# KMS error code -> (our code, what the operator reads)
_REFUSALS = {
    "DisabledException": ("wallet_key_kms_disabled", "the KMS key is disabled"),
    "KMSInvalidStateException": (
        "wallet_key_kms_disabled",
        "the KMS key is not usable (pending deletion or pending import)",
    ),
    "AccessDeniedException": (
        "wallet_key_kms_denied",
        "this role may not use the KMS key (kms:Decrypt / kms:Encrypt denied or grant revoked)",
    ),
    "NotFoundException": ("wallet_key_kms_missing", "the KMS key does not exist"),
    "InvalidCiphertextException": (
        "wallet_key_kms_refused",
        "KMS refused the wrapped key: the encryption context does not name this wallet, "
        "or the envelope was altered",
    ),
    "IncorrectKeyException": (
        "wallet_key_kms_refused",
        "the wrapped key was not made with the KMS key the envelope names",
    ),
}


# boto3 operation -> the IAM permission it needs, named in an AccessDenied refusal
_PERMISSIONS = {
    "decrypt": "kms:Decrypt",
    "encrypt": "kms:Encrypt",
    "describe_key": "kms:DescribeKey",
}


def _aws_code(exc: ClientError) -> str:
    """The error's code; a 403 whose body is not KMS's JSON (moto's IAM check answers in XML,
    so can a proxy) counts as AccessDeniedException: the caller was refused either way."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status == 403 and code in ("", "403", "AccessDenied"):
        return "AccessDeniedException"
    return code


def context(wallet: str) -> dict[str, str]:
    return {"tonrail:purpose": PURPOSE, "tonrail:wallet": wallet}


class KmsKek:
    """Wraps data keys under one KMS key; `client` is a boto3 KMS client."""

    kind = KIND

    def __init__(self, client: Any, key_id: str) -> None:
        if not key_id:
            raise WalletKeyError("no KMS key id", code="wallet_key_kms_missing")
        self._client = client
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"KmsKek(key_id={self.key_id!r})"

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = getattr(self._client, operation)(**kwargs)
            return answer
        except ClientError as exc:
            aws_code = _aws_code(exc)
            code, what = _REFUSALS.get(
                aws_code, ("wallet_key_kms_unavailable", f"KMS answered {aws_code or 'an error'}")
            )
            if aws_code == "AccessDeniedException":
                permission = _PERMISSIONS.get(operation, operation)
                what = (
                    f"AccessDeniedException: this role lacks {permission} on the KMS key "
                    "(IAM policy, key policy or a revoked grant)"
                )
            raise WalletKeyError(
                f"cannot use KMS key {kwargs.get('KeyId') or self.key_id} for the wallet key "
                f"({operation}): {what}",
                code=code,
            ) from None
        except BotoCoreError as exc:
            raise WalletKeyError(
                f"cannot reach KMS for key {self.key_id}: {type(exc).__name__}",
                code="wallet_key_kms_unavailable",
            ) from None

    def _check_usable(self, key_id: str) -> None:
        """Refuse a key that is not Enabled, naming its state (KMS itself refuses it too, with
        a terser error; a role without kms:DescribeKey skips this and lets KMS decide)."""
        try:
            meta = self._client.describe_key(KeyId=key_id)["KeyMetadata"]
        except ClientError as exc:
            if _aws_code(exc) == "AccessDeniedException":
                return
            self._call("describe_key", KeyId=key_id)  # raises the mapped error
            return
        except BotoCoreError:
            return  # Decrypt reports the connection problem
        state = str(meta.get("KeyState") or ("Enabled" if meta.get("Enabled") else "Disabled"))
        if state == "Enabled":
            return
        what = {
            "Disabled": "the KMS key is disabled",
            "PendingDeletion": "the KMS key is pending deletion",
        }.get(state, f"the KMS key is in state {state}")
        raise WalletKeyError(
            f"cannot use KMS key {key_id} for the wallet key: {what}",
            code="wallet_key_kms_disabled",
        )

    def wrap(self, dek: bytes, wallet: str) -> dict[str, Any]:
        self._check_usable(self.key_id)
        answer = self._call(
            "encrypt", KeyId=self.key_id, Plaintext=dek, EncryptionContext=context(wallet)
        )
        return {
            "kind": KIND,
            "key_id": str(answer.get("KeyId") or self.key_id),
            "wrapped": base64.b64encode(answer["CiphertextBlob"]).decode(),
        }

    def unwrap(self, blob: dict[str, Any], wallet: str) -> bytes:
        if blob.get("kind") != KIND:
            raise WalletKeyError(f"key envelope: KEK kind {blob.get('kind')!r} is not {KIND}")
        try:
            ciphertext = base64.b64decode(str(blob.get("wrapped") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise WalletKeyError("key envelope: the KMS-wrapped key is not base64") from None
        if not ciphertext:
            raise WalletKeyError("key envelope: the KMS-wrapped key is missing")
        key_id = str(blob.get("key_id") or self.key_id)
        self._check_usable(key_id)
        answer = self._call(
            "decrypt",
            CiphertextBlob=ciphertext,
            KeyId=key_id,
            EncryptionContext=context(wallet),
        )
        dek = bytes(answer["Plaintext"])
        if len(dek) != DEK_BYTES:
            raise WalletKeyError("key envelope: the data key has the wrong length")
        return dek


def kms_client(settings: Settings) -> Any:
    """A boto3 KMS client: AWS_REGION, AWS_KMS_ENDPOINT_URL, credentials from boto3's chain."""
    quiet_botocore()  # at DEBUG botocore would log the data key in the clear
    kwargs: dict[str, Any] = {"region_name": settings.aws_region}
    if settings.aws_kms_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_kms_endpoint_url
    return boto3.client("kms", **kwargs)


def kms_kek(settings: Settings, key_id: str) -> KmsKek:
    return KmsKek(kms_client(settings), key_id)
