"""Read a TensorFlow frozen ``GraphDef`` (.pb) without TensorFlow.

A GraphDef is plain protobuf. This module decodes just the messages a frozen inference graph
needs (NodeDef, AttrValue, TensorProto, TensorShapeProto) straight from the wire format, so the
constant weights of a model-zoo graph can be loaded into a PyTorch rebuild of the network.
Field numbers follow tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape}.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmw.errors import ExportError

# tensorflow/core/framework/types.proto -> numpy
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.float64),
    3: np.dtype(np.int32),
    4: np.dtype(np.uint8),
    5: np.dtype(np.int16),
    6: np.dtype(np.int8),
    9: np.dtype(np.int64),
    10: np.dtype(np.bool_),
}
_DT_STRING = 7
# TensorProto's typed value fields: field number -> (dtype code it is used for, packed struct format)
_VALUE_FIELDS = {5: "f", 6: "d", 7: "varint", 10: "varint", 11: "varint"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value) for one protobuf message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ExportError(f"GraphDef: unsupported protobuf wire type {wire} for field {number}")
        if pos > end:
            raise ExportError(f"GraphDef: field {number} runs past the end of its message ({pos} > {end} bytes)")
        yield number, wire, value


@dataclass
class TFNode:
    """One NodeDef: its name, op, inputs and (decoded) attributes."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, object] = field(default_factory=dict)


def _decode_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, _, value in _fields(buf):
        if number == 2:
            size = 0
            for n, _, v in _fields(value):  # type: ignore[arg-type]
                if n == 1:
                    size = v if v < 2**63 else v - 2**64  # type: ignore[operator]
            dims.append(int(size))
    return tuple(dims)


def _decode_packed(value: object, wire: int, kind: str) -> list:
    if kind == "varint":
        if wire == 0:
            return [value]
        out, pos, buf = [], 0, value
        while pos < len(buf):  # type: ignore[arg-type]
            v, pos = _varint(buf, pos)  # type: ignore[arg-type]
            out.append(v if v < 2**63 else v - 2**64)
        return out
    size = struct.calcsize(kind)
    if wire in (1, 5):
        return [struct.unpack("<" + kind, value)[0]]  # type: ignore[arg-type]
    return list(struct.unpack(f"<{len(value) // size}{kind}", value))  # type: ignore[arg-type]


def decode_tensor(buf: bytes) -> np.ndarray:
    """Decode a TensorProto into a numpy array."""
    dtype_code, shape, content = 0, (), None
    values: list = []
    for number, wire, value in _fields(buf):
        if number == 1:
            dtype_code = value  # type: ignore[assignment]
        elif number == 2:
            shape = _decode_shape(value)  # type: ignore[arg-type]
        elif number == 4:
            content = value
        elif number in _VALUE_FIELDS:
            values.extend(_decode_packed(value, wire, _VALUE_FIELDS[number]))
        elif number == 8:  # string_val
            values.append(bytes(value))  # type: ignore[arg-type]
    if dtype_code == _DT_STRING:
        return np.asarray(values, dtype=object).reshape(shape if values else (0,))
    if dtype_code not in _DTYPES:
        raise ExportError(f"GraphDef: tensor dtype code {dtype_code} is not supported; supported: {sorted(_DTYPES)}")
    dtype = _DTYPES[dtype_code]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        return np.frombuffer(content, dtype=dtype).reshape(shape).copy()  # type: ignore[arg-type]
    if not values:
        return np.zeros(shape, dtype=dtype)
    array = np.asarray(values, dtype=dtype)
    if array.size == 1 and count != 1:  # TensorFlow stores a splat as one value
        array = np.full(count, array[0], dtype=dtype)
    return array.reshape(shape)


def _decode_attr(buf: bytes) -> object:
    for number, _, value in _fields(buf):
        if number == 2:
            return bytes(value)  # type: ignore[arg-type]
        if number in (3, 6):
            return value
        if number == 4:
            return struct.unpack("<f", value)[0]  # type: ignore[arg-type]
        if number == 5:
            return bool(value)
        if number == 7:
            return _decode_shape(value)  # type: ignore[arg-type]
        if number == 8:
            return decode_tensor(value)  # type: ignore[arg-type]
        if number == 1:  # ListValue
            items: list = []
            for n, w, v in _fields(value):  # type: ignore[arg-type]
                if n == 2:
                    items.append(bytes(v))  # type: ignore[arg-type]
                elif n == 3:
                    items.extend(_decode_packed(v, w, "varint"))
                elif n == 4:
                    items.extend(_decode_packed(v, w, "f"))
            return items
    return None


def _decode_node(buf: bytes) -> TFNode:
    node = TFNode(name="", op="")
    for number, _, value in _fields(buf):
        if number == 1:
            node.name = bytes(value).decode()  # type: ignore[arg-type]
        elif number == 2:
            node.op = bytes(value).decode()  # type: ignore[arg-type]
        elif number == 3:
            node.inputs.append(bytes(value).decode())  # type: ignore[arg-type]
        elif number == 5:
            key, attr = "", None
            for n, _, v in _fields(value):  # type: ignore[arg-type]
                if n == 1:
                    key = bytes(v).decode()  # type: ignore[arg-type]
                elif n == 2:
                    attr = _decode_attr(v)  # type: ignore[arg-type]
            node.attrs[key] = attr
    return node


@dataclass
class TFGraph:
    """A decoded frozen graph: nodes by name, in file order."""

    nodes: dict[str, TFNode]

    def constants(self) -> dict[str, np.ndarray]:
        """Every ``Const`` node's value, by node name."""
        return {
            n.name: n.attrs["value"]
            for n in self.nodes.values()
            if n.op == "Const" and isinstance(n.attrs.get("value"), np.ndarray)
        }


def load_tf_graph(path: str | Path) -> TFGraph:
    """Read a frozen GraphDef file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ExportError(f"frozen graph {p}: cannot be read ({exc.strerror})") from None
    nodes: dict[str, TFNode] = {}
    try:
        for number, _, value in _fields(data):
            if number == 1:
                node = _decode_node(value)  # type: ignore[arg-type]
                nodes[node.name] = node
    except (ExportError, IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ExportError(f"frozen graph {p}: not a valid GraphDef protobuf ({exc})") from None
    if not nodes:
        raise ExportError(f"frozen graph {p}: expected a GraphDef with nodes, found none")
    return TFGraph(nodes)
