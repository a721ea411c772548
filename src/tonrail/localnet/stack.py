"""TVM stacks in toncenter's JSON shapes (v2 legacy `[type, value]` pairs and v3 objects)."""

from __future__ import annotations

from typing import Any

from ton_core import Builder, Cell, Slice, VmStack, VmTuple

from tonrail.localnet.boc import b64, cell_from


def _num(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    neg = text.startswith("-")
    body = text[1:] if neg else text
    n = int(body, 16) if body.lower().startswith("0x") else int(body)
    return -n if neg else n


class StackError(ValueError):
    """A v2 stack toncenter refuses, with its documented text and status (422_run, 542)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _boc_entry(kind: str, value: Any) -> Cell:
    """The cell of a `tvm.Cell`/`tvm.Slice` entry: base64 text, or `{"bytes": base64}`."""
    name = "tvm.Slice" if "lice" in kind else "tvm.Cell"
    raw = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(raw, str):
        raise StackError(f"Invalid {name}, base64 string expected")
    if not raw.strip():
        raise StackError(f"Empty {name}")
    try:
        return cell_from(raw)
    except Exception as exc:
        raise StackError(f"Invalid {name}, base64 string expected") from exc


def stack_from_v2(items: list[Any]) -> Cell:
    """Parse a toncenter v2 stack (`[["num", "0x1"], ["tvm.Slice", boc], ...]`); refusals
    raise StackError in toncenter's words."""
    values: list[Any] = []
    for item in items:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise StackError("Invalid stack entry format: array of exact 2 elements expected")
        kind, value = item
        if not isinstance(kind, str):
            raise StackError("Expected string as first element in stack entry")
        if kind in ("num", "int", "number"):
            if not isinstance(value, int | str) or isinstance(value, bool):
                raise StackError("Wrong type of number in stack entry")
            try:
                values.append(_num(value))
            except ValueError as exc:
                raise StackError("Wrong type of number in stack entry") from exc
        elif kind in ("tvm.Slice", "slice"):
            values.append(_boc_entry(kind, value).begin_parse())
        elif kind in ("tvm.Cell", "cell"):
            values.append(_boc_entry(kind, value))
        elif kind == "null":
            values.append(None)
        elif kind in ("tuple", "list"):
            elements = value.get("elements", []) if isinstance(value, dict) else value
            values.append(VmTuple(_decode_v3_list(elements)))
        else:
            raise StackError(f"Unsupported stack entry type: {kind}", 542)
    return VmStack.serialize(values)


def _decode_v3_list(elements: list[Any]) -> list[Any]:
    out: list[Any] = []
    for el in elements:
        if isinstance(el, list):
            out.append(VmStack.deserialize(stack_from_v2([el]).begin_parse())[0])
        else:
            out.extend(VmStack.deserialize(stack_from_v3([el]).begin_parse()))
    return out


def stack_from_v3(items: list[dict[str, Any]]) -> Cell:
    """Parse a toncenter v3 stack (`[{"type": "num", "value": "0x1"}, ...]`)."""
    values: list[Any] = []
    for item in items:
        kind, value = item.get("type"), item.get("value")
        if kind == "num":
            values.append(_num(value))
        elif kind == "cell":
            values.append(cell_from(str(value)))
        elif kind == "slice":
            values.append(cell_from(str(value)).begin_parse())
        elif kind == "null":
            values.append(None)
        elif kind in ("tuple", "list"):
            inner = VmStack.deserialize(stack_from_v3(list(value or [])).begin_parse())
            values.append(VmTuple(inner))
        else:
            raise ValueError(f"unsupported stack entry type {kind!r}")
    return VmStack.serialize(values)


def _hex(n: int) -> str:
    return ("-0x" + format(-n, "x")) if n < 0 else ("0x" + format(n, "x"))


def _as_cell(value: Any) -> Cell:
    if isinstance(value, Slice):
        return value.to_cell()
    if isinstance(value, Builder):
        return value.end_cell()
    if isinstance(value, Cell):
        return value
    raise TypeError(type(value))


def _items(value: Any) -> list[Any] | None:
    """The elements of a TVM tuple as VmStack returns it, or None for any other value."""
    if isinstance(value, VmTuple):
        return list(value.list)
    if isinstance(value, list):
        return value
    return None


def _tonlib_entry(value: Any) -> dict[str, Any]:
    if value is None:
        return {"@type": "tvm.stackEntryUnsupported"}
    if isinstance(value, int):
        return {
            "@type": "tvm.stackEntryNumber",
            "number": {"@type": "tvm.numberDecimal", "number": str(value)},
        }
    items = _items(value)
    if items is not None:
        return {
            "@type": "tvm.stackEntryTuple",
            "tuple": {"@type": "tvm.tuple", "elements": [_tonlib_entry(v) for v in items]},
        }
    if isinstance(value, Slice):
        return {
            "@type": "tvm.stackEntrySlice",
            "slice": {"@type": "tvm.slice", "bytes": b64(_as_cell(value))},
        }
    return {
        "@type": "tvm.stackEntryCell",
        "cell": {"@type": "tvm.cell", "bytes": b64(_as_cell(value))},
    }


def _legacy_cell(cell: Cell) -> dict[str, Any]:
    """toncenter's `object` view of a cell: its data bits, refs and whether it is exotic."""
    import base64

    return {
        "data": {"b64": base64.b64encode(cell.bits.tobytes()).decode(), "len": len(cell.bits)},
        "refs": [_legacy_cell(ref) for ref in cell.refs],
        "special": cell.type_ != -1,  # -1 marks an ordinary cell
    }


def stack_to_v2(stack_boc: str) -> list[Any]:
    """Render a result stack the way toncenter v2 runGetMethod does."""
    out: list[Any] = []
    for value in VmStack.deserialize(cell_from(stack_boc).begin_parse()):
        if value is None:
            out.append(["null", None])
        elif isinstance(value, int):
            out.append(["num", _hex(value)])
        elif (items := _items(value)) is not None:
            out.append(
                ["tuple", {"@type": "tvm.tuple", "elements": [_tonlib_entry(v) for v in items]}]
            )
        elif isinstance(value, Slice):
            cell = _as_cell(value)
            out.append(["slice", {"bytes": b64(cell), "object": _legacy_cell(cell)}])
        else:
            cell = _as_cell(value)
            out.append(["cell", {"bytes": b64(cell), "object": _legacy_cell(cell)}])
    return out


def stack_to_v3(stack_boc: str) -> list[dict[str, Any]]:
    """Render a result stack the way toncenter v3 runGetMethod does."""

    def one(value: Any) -> dict[str, Any]:
        if value is None:
            return {"type": "null", "value": None}
        if isinstance(value, int):
            return {"type": "num", "value": _hex(value)}
        items = _items(value)
        if items is not None:
            return {"type": "tuple", "value": [one(v) for v in items]}
        if isinstance(value, Slice):
            return {"type": "slice", "value": b64(_as_cell(value))}
        return {"type": "cell", "value": b64(_as_cell(value))}

    return [one(v) for v in VmStack.deserialize(cell_from(stack_boc).begin_parse())]
