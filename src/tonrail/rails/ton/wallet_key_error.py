"""What every key-encryption key shares with the envelope: its error and its constants."""

from __future__ import annotations

from tonrail.errors import TonrailError

PURPOSE = "ton-hot-wallet"
DEK_BYTES = 32


class WalletKeyError(TonrailError):
    """The hot wallet key cannot be loaded or opened. Never carries key material."""

    code = "wallet_key_invalid"
    status = 500
