"""A faster parse of the BOCs the local network makes itself (the emulator's transactions).

pytoniq_core's `Cell.one_from_boc` is general (any level, pruned branches, Merkle cells) and
builds each cell through layers of bit operations: measured, the largest cost of producing a
block. The transactions the emulator returns are plain: one root, level-0 cells, at most
library cells among the exotic ones. For those this builds the very same pytoniq `Cell`s
(same bits, refs, type, descriptors, data, depth and representation hash; tests/localnet/
test_fast_boc.py compares every field with pytoniq's parse) in one pass over the bytes, the
hash taken with one sha256 per cell as TON defines it for level 0: sha256(d1 d2 data
depth(ref)... hash(ref)...). Anything else raises `Unusual` and the caller uses pytoniq.

It fills a `Cell`'s attributes as `Cell.__init__` does, so it depends on pytoniq_core's
layout (pinned in requirements.lock); the comparison test fails if that layout changes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bitarray import bitarray
from ton_core import Cell
from ton_core.boc.exotic import LevelMask
from ton_core.boc.tvm_bitarray import TvmBitarray

BOC_MAGIC = bytes.fromhex("b5ee9c72")  # every serialized bag of cells starts with it
_LIBRARY = 2  # the only exotic cell type taken here (level 0, as ordinary ones)
_LEVEL0 = LevelMask(0)
_sha256 = hashlib.sha256
_new = Cell.__new__
_from_bytes = int.from_bytes
_bits_new = bitarray.__new__
_frombytes = bitarray.frombytes
_delitem = bitarray.__delitem__


class Unusual(Exception):
    """Not a BOC this parser takes (several roots, levels, pruned or Merkle cells)."""


def parse(raw: bytes) -> Cell:
    """The root cell of a one-root BOC of level-0 cells (its CRC, if any, is not checked)."""
    try:
        return _parse(raw)
    except IndexError as exc:  # malformed: pytoniq_core's parse names what is wrong
        raise Unusual("truncated") from exc


def _parse(raw: bytes) -> Cell:
    if raw[:4] != BOC_MAGIC or len(raw) < 6:
        raise Unusual("not a standard BOC")
    flags = raw[4]
    size = flags & 7
    off_bytes = raw[5]
    if not size or not off_bytes:
        raise Unusual("bad sizes")
    i = 6
    cells_num = _from_bytes(raw[i : i + size], "big")
    roots = _from_bytes(raw[i + size : i + 2 * size], "big")
    absent = _from_bytes(raw[i + 2 * size : i + 3 * size], "big")
    i += 3 * size
    if roots != 1 or absent:
        raise Unusual("one root, no absent cells")
    total = _from_bytes(raw[i : i + off_bytes], "big")
    i += off_bytes
    root = _from_bytes(raw[i : i + size], "big")
    i += size
    if flags & 0x80:  # has_idx: the offsets are not needed
        i += cells_num * off_bytes
    data = raw[i : i + total]
    if len(data) != total or root != 0 or cells_num * 2 > total:
        raise Unusual("truncated, or the root is not first")

    # Where each cell is: (d1, d2, data start, data end, ref indexes).
    spans: list[tuple[int, int, int, int, list[int]]] = []
    p = 0
    for _ in range(cells_num):
        d1 = data[p]
        d2 = data[p + 1]
        if d1 >> 5 or (d1 & 7) > 4:
            raise Unusual("a cell of a level above 0, or absent")
        q = p + 2 + (34 if d1 & 16 else 0)  # stored hash and depth: recomputed below
        end = q + ((d2 + 1) >> 1)
        indexes = [
            _from_bytes(data[end + k * size : end + (k + 1) * size], "big") for k in range(d1 & 7)
        ]
        spans.append((d1, d2, q, end, indexes))
        p = end + (d1 & 7) * size
    if p != total:
        raise Unusual("cell data does not add up")

    # Any: the attributes set are pytoniq_core's private ones, which its stubs do not name.
    cells: list[Any] = [None] * cells_num
    for index in range(cells_num - 1, -1, -1):
        d1, d2, q, end, ref_indexes = spans[index]
        body = data[q:end]
        bit_len = len(body) * 8
        if d2 & 1:  # the last byte ends with the completion tag: 1 then zeros
            last = body[-1] if body else 0
            if not last:
                raise Unusual("no completion tag")
            bit_len -= (last & -last).bit_length()
            if not bit_len % 8:
                raise Unusual("a completion tag on a byte boundary (not canonical)")
        exotic = bool(d1 & 8)
        cell_type = -1
        if exotic:
            if bit_len < 8 or body[0] != _LIBRARY:
                raise Unusual("an exotic cell other than a library cell")
            cell_type = _LIBRARY
        children: list[Any] = []
        depth = 0
        descriptors = bytes((d1 & 15, d2))  # refs and the exotic flag, not the hash flag
        digest = _sha256(descriptors)
        digest.update(body)
        for r in ref_indexes:
            child = cells[r] if r > index else None
            if child is None:
                raise Unusual("a reference backwards")
            children.append(child)
            child_depth = child._depths[0]
            depth = max(depth, child_depth + 1)
            digest.update(child_depth.to_bytes(2, "big"))
        for child in children:
            digest.update(child._hash)
        # A TvmBitarray as bitarray makes it: its Python __init__ only records the 1023 limit
        # that its own methods check as a constant.
        bits = _bits_new(TvmBitarray)
        _frombytes(bits, body)
        _delitem(bits, slice(bit_len, None))
        cell: Any = _new(Cell)
        digest_value = digest.digest()
        cell.__dict__.update(
            bits=bits,
            refs=children,
            type_=cell_type,
            is_exotic=exotic,
            level_mask=_LEVEL0,
            _hashes=[digest_value],
            _depths=[depth],
            _descriptors=descriptors,
            _data_bytes=body,
            _hash=digest_value,
        )
        cells[index] = cell
    result: Cell = cells[0]
    return result
