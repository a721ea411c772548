"""A stand-in STON.fi v1 pool for the local network: a contract whose only get-method is
`get_pool_data` (method id crc16("get_pool_data") | 0x10000, as FunC assigns it), answering
the pool's ten-entry stack with reserves and token wallets read from its data. Its code is
assembled here, opcode by opcode (no FunC compiler on the machine, and STON.fi's compiled pool
code is not bundled): an internal message (selector 0) is accepted and does nothing; any other
get-method fails with exit code 11."""

from __future__ import annotations

import binascii

from ton_core import Address, Cell, StateInit, begin_cell


def method_id(name: str) -> int:
    return (binascii.crc_hqx(name.encode(), 0) & 0xFFFF) | 0x10000


def pool_code() -> Cell:
    mid = method_id("get_pool_data")
    assert 0 <= mid < 2**18
    ops = bytes.fromhex("FF00")  # SETCP0
    ops += bytes.fromhex("20DD")  # DUP IFNOTRET: selector 0 (recv_internal) returns
    ops += b"\x82" + mid.to_bytes(3, "big")  # PUSHINT method id (19-bit form, l = 0)
    ops += bytes.fromhex("BAF28B")  # EQUAL THROWIFNOT 11
    ops += bytes.fromhex("ED44D0")  # PUSH c4 CTOS
    ops += bytes.fromhex("FA00FA00")  # LDGRAMS LDGRAMS: reserve0 reserve1
    ops += bytes.fromhex("FA40FA40")  # LDMSGADDR LDMSGADDR: token0/1 wallet addresses
    ops += bytes.fromhex("801401")  # PUSHINT 20 SWAP: lp_fee
    ops += bytes.fromhex("7A01")  # PUSHINT 10 SWAP: protocol_fee
    ops += bytes.fromhex("7A01")  # PUSHINT 10 SWAP: ref_fee
    ops += bytes.fromhex("FA40D1")  # LDMSGADDR ENDS: protocol_fee_address
    ops += bytes.fromhex("7070")  # PUSHINT 0 PUSHINT 0: collected protocol fees
    return begin_cell().store_bytes(ops).end_cell()


def pool_data(reserve0: int, reserve1: int, token0: Address, token1: Address) -> Cell:
    return (
        begin_cell()
        .store_coins(reserve0)
        .store_coins(reserve1)
        .store_address(token0)
        .store_address(token1)
        .store_address(token0)  # the protocol fee address: any address
        .end_cell()
    )


def pool_state(reserve0: int, reserve1: int, token0: Address, token1: Address) -> StateInit:
    return StateInit(code=pool_code(), data=pool_data(reserve0, reserve1, token0, token1))
