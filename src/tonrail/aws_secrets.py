"""Settings from AWS Secrets Manager: `NAME_SECRET_ARN` for one setting, or one JSON secret for
the service (`TONRAIL_SECRETS_ARN`, e.g. {"JWT_SECRET": "...", "STRIPE_SECRET_KEY": "..."}).

settings.py reads them at start (a settings source ahead of the environment) and
secrets_refresh.py again every SECRETS_REFRESH_SECONDS. A secret that cannot be read stops the
start with a message naming the setting and the ARN, never a value. This module knows nothing
of tonrail's settings: it is handed the environment and the names of the settings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

SUFFIX = "_SECRET_ARN"
BUNDLE = "TONRAIL_SECRETS_ARN"
ENDPOINT = "AWS_SECRETSMANAGER_ENDPOINT_URL"


class SecretsError(Exception):
    """A configured secret cannot be read; the message names the setting and ARN only."""


def arns_of(env: Mapping[str, str], fields: Iterable[str]) -> tuple[str, dict[str, str]]:
    """(the service's JSON secret ARN or "", {setting: ARN}) from the environment."""
    known = {f.lower() for f in fields}
    singles: dict[str, str] = {}
    for key, value in env.items():
        upper = key.upper()
        if not upper.endswith(SUFFIX) or not value.strip() or upper == BUNDLE:
            continue
        name = upper[: -len(SUFFIX)].lower()
        if name not in known:
            raise SecretsError(f"{upper}: there is no setting {name.upper()}")
        singles[name] = value.strip()
    bundle = next((v.strip() for k, v in env.items() if k.upper() == BUNDLE), "")
    return bundle, singles


def quiet_botocore() -> None:
    """botocore logs whole request and response bodies at DEBUG (secret values, KMS
    plaintexts): keep its loggers at INFO or above, whatever the root logger says."""
    for name in ("botocore", "boto3", "urllib3"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def _region(arn: str, default: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[0] == "arn" and parts[3] else default


def _read(
    clients: dict[str, Any], env: Mapping[str, str], arn: str, what: str, endpoint: str
) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    quiet_botocore()
    upper = {k.upper(): v for k, v in env.items()}
    region = _region(arn, upper.get("AWS_REGION", "") or "us-east-1")
    if region not in clients:
        kwargs: dict[str, Any] = {"region_name": region}
        if endpoint or upper.get(ENDPOINT):
            kwargs["endpoint_url"] = endpoint or upper[ENDPOINT]
        clients[region] = boto3.client("secretsmanager", **kwargs)
    try:
        answer = clients[region].get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "an error")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 403 and code in ("403", "AccessDenied"):  # an XML body (moto, a proxy)
            code = "AccessDeniedException"
        if code == "AccessDeniedException":
            code += " (this role lacks secretsmanager:GetSecretValue on it)"
        raise SecretsError(f"{what}: cannot read secret {arn}: {code}") from None
    except BotoCoreError as exc:
        raise SecretsError(f"{what}: cannot reach Secrets Manager for {arn}: {exc}") from None
    text = answer.get("SecretString")
    if not isinstance(text, str):
        raise SecretsError(f"{what}: secret {arn} has no SecretString (binary is not supported)")
    return text


def fetch(env: Mapping[str, str], fields: Iterable[str], endpoint: str = "") -> dict[str, str]:
    """{setting name (lower case): value} of every configured secret; {} when none is.
    `endpoint`: AWS_SECRETSMANAGER_ENDPOINT_URL, else the environment's, else AWS's."""
    fields = list(fields)
    bundle, singles = arns_of(env, fields)
    if not bundle and not singles:
        return {}
    known = {f.lower() for f in fields}
    clients: dict[str, Any] = {}
    values: dict[str, str] = {}
    if bundle:
        try:
            doc = json.loads(_read(clients, env, bundle, BUNDLE, endpoint))
        except json.JSONDecodeError:
            raise SecretsError(f"{BUNDLE}: secret {bundle} is not a JSON object") from None
        if not isinstance(doc, dict):
            raise SecretsError(f"{BUNDLE}: secret {bundle} is not a JSON object")
        unknown = sorted(k for k in doc if str(k).lower() not in known)
        if unknown:
            raise SecretsError(f"{BUNDLE}: secret {bundle} names unknown settings {unknown}")
        values.update({str(k).lower(): _text(v) for k, v in doc.items()})
    for name, arn in singles.items():
        text = _read(clients, env, arn, f"{name.upper()}{SUFFIX}", endpoint)
        values[name] = _one_value(text, name)
    return values


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _one_value(text: str, name: str) -> str:
    """A secret's value: the whole SecretString, or its NAME key when it is a JSON object (as
    the console's key/value secrets are)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(doc, dict):
        for key, value in doc.items():
            if str(key).lower() == name:
                return _text(value)
    return text


def store(env: Mapping[str, str], name: str, value: str, endpoint: str = "") -> str | None:
    """Write `value` as setting `name` where it comes from (NAME_SECRET_ARN, or its key in
    TONRAIL_SECRETS_ARN); the ARN written, or None when the setting is not in Secrets Manager."""
    bundle, singles = arns_of(env, [name])
    clients: dict[str, Any] = {}
    if name.lower() in singles:
        arn = singles[name.lower()]
        text = _read(clients, env, arn, f"{name.upper()}{SUFFIX}", endpoint)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and any(str(k).lower() == name.lower() for k in doc):
            doc = {k: (value if str(k).lower() == name.lower() else v) for k, v in doc.items()}
            clients[next(iter(clients))].put_secret_value(
                SecretId=arn, SecretString=json.dumps(doc)
            )
        else:
            clients[next(iter(clients))].put_secret_value(SecretId=arn, SecretString=value)
        return arn
    if bundle:
        try:
            doc = json.loads(_read(clients, env, bundle, BUNDLE, endpoint))
        except json.JSONDecodeError:
            return None
        keys = [k for k in doc if str(k).lower() == name.lower()] if isinstance(doc, dict) else []
        if keys:
            doc[keys[0]] = value
            clients[next(iter(clients))].put_secret_value(
                SecretId=bundle, SecretString=json.dumps(doc)
            )
            return bundle
    return None
