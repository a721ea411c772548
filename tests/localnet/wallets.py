"""A minimal wallet v4r2 signer for tests that need to control seqno, expiry and key."""

from __future__ import annotations

from nacl.signing import SigningKey
from ton_core import (
    CONTRACT_CODES,
    Address,
    Cell,
    ContractVersion,
    CurrencyCollection,
    ExternalMsgInfo,
    InternalMsgInfo,
    MessageAny,
    StateInit,
    begin_cell,
    to_cell,
)

SUBWALLET = 698983191


class V4Wallet:
    def __init__(self, key: SigningKey) -> None:
        self.key = key
        data = (
            begin_cell()
            .store_uint(0, 32)
            .store_uint(SUBWALLET, 32)
            .store_bytes(bytes(key.verify_key))
            .store_bit(0)
            .end_cell()
        )
        self.state_init = StateInit(
            code=to_cell(CONTRACT_CODES[ContractVersion.WalletV4R2]), data=data
        )
        self.address = Address((0, self.state_init.serialize().hash))

    def body(
        self,
        seqno: int,
        valid_until: int,
        dest: Address,
        amount: int,
        *,
        bounce: bool = False,
        mode: int = 3,
        signer: SigningKey | None = None,
        payload: Cell | None = None,
    ) -> Cell:
        info = InternalMsgInfo(
            True, bounce, False, None, dest, CurrencyCollection(amount), 0, 0, 0, 0
        )
        out = MessageAny(info, None, payload or Cell.empty()).serialize()
        unsigned = (
            begin_cell()
            .store_uint(SUBWALLET, 32)
            .store_uint(valid_until, 32)
            .store_uint(seqno, 32)
            .store_uint(0, 8)
            .store_uint(mode, 8)
            .store_ref(out)
            .end_cell()
        )
        sig = (signer or self.key).sign(unsigned.hash).signature
        return begin_cell().store_bytes(sig).store_cell(unsigned).end_cell()

    def external(self, body: Cell, *, deploy: bool = False) -> Cell:
        info = ExternalMsgInfo(None, self.address, 0)
        return MessageAny(info, self.state_init if deploy else None, body).serialize()
