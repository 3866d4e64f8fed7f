"""A reader for TensorFlow "tensor bundle" checkpoints (V2 format), without TensorFlow.

A checkpoint with prefix ``P`` is two files: ``P.index`` and ``P.data-00000-of-0000N``.

- ``P.index`` is a LevelDB-style SSTable: data blocks of prefix-compressed key/value entries
  with a restart array, an index block pointing at the data blocks, and a 48-byte footer
  (metaindex handle, index handle, padding, magic ``0xdb4775248b80fb57``). Every block is
  followed by a 5-byte trailer: compression type and the masked CRC-32C of block + type.
- The key ``""`` holds a ``BundleHeaderProto``; every other key is a variable name whose value
  is a ``BundleEntryProto`` (dtype, shape, shard id, offset, size, masked CRC-32C of the bytes).
- ``P.data-*`` shards hold the raw little-endian tensor bytes at those offsets.

Both protobuf messages are decoded here with a minimal wire-format decoder, and every block and
tensor is checked against its stored CRC-32C (Castagnoli), so a reader bug or a corrupt file
fails loudly instead of giving wrong weights.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TFTensorEntry", "crc32c", "list_tf_checkpoint", "read_tf_checkpoint"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5
_CRC_MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    19: np.dtype("<f2"),
}


def _crc32c_table() -> np.ndarray:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = [int(v) for v in _crc32c_table()]


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, as used by LevelDB tables and TensorFlow bundles."""
    table = _CRC_TABLE
    c = crc ^ 0xFFFFFFFF
    for byte in data:
        c = table[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
    rot = (masked - _CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode protobuf wire format into (field number, value) pairs, in order."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


@dataclass(frozen=True)
class TFTensorEntry:
    """One ``BundleEntryProto``: where a variable's bytes live and what they hold."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # unmasked


def _parse_entry(name: str, value: bytes) -> TFTensorEntry:
    dtype_code, shape, shard, offset, size, crc = 0, [], 0, 0, 0, 0
    for number, field in _proto_fields(value):
        if number == 1:
            dtype_code = int(field)  # type: ignore[arg-type]
        elif number == 2:
            for dim_number, dim in _proto_fields(field):  # type: ignore[arg-type]
                if dim_number == 2:
                    size_fields = dict(_proto_fields(dim))  # type: ignore[arg-type]
                    shape.append(int(size_fields.get(1, 0)))  # type: ignore[arg-type]
        elif number == 3:
            shard = int(field)  # type: ignore[arg-type]
        elif number == 4:
            offset = int(field)  # type: ignore[arg-type]
        elif number == 5:
            size = int(field)  # type: ignore[arg-type]
        elif number == 6:
            crc = _unmask(int(field))  # type: ignore[arg-type]
        elif number == 7:
            raise ValueError(f"variable {name!r} is stored as slices, which this reader does not support")
    if dtype_code not in _DTYPES:
        raise ValueError(f"variable {name!r} has TensorFlow dtype code {dtype_code}, which is not supported")
    return TFTensorEntry(name, _DTYPES[dtype_code], tuple(shape), shard, offset, size, crc)


def _read_block(table: bytes, offset: int, size: int, path: Path) -> bytes:
    block = table[offset : offset + size]
    trailer = table[offset + size : offset + size + _BLOCK_TRAILER_SIZE]
    if len(block) != size or len(trailer) != _BLOCK_TRAILER_SIZE:
        raise ValueError(f"{path}: block at {offset} runs past the end of the file; the file is truncated")
    kind = trailer[0]
    if _unmask(struct.unpack("<I", trailer[1:])[0]) != crc32c(trailer[:1], crc32c(block)):
        raise ValueError(f"{path}: CRC mismatch in the block at offset {offset}; the file is corrupt")
    if kind != 0:
        raise ValueError(f"{path}: block compression type {kind} is not supported (only uncompressed)")
    return block


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _index_path(prefix: str | os.PathLike[str]) -> Path:
    return Path(str(prefix) + ".index")


def list_tf_checkpoint(prefix: str | os.PathLike[str]) -> dict[str, TFTensorEntry]:
    """The variables of the checkpoint with file prefix ``prefix`` (``prefix + ".index"`` must exist).

    A prefix that is a directory ending in a separator (as the musicnn checkpoints, whose files are
    named ``.index`` and ``.data-00000-of-00001``) is accepted as is.
    """
    path = _index_path(prefix)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no TensorFlow checkpoint index here; pass the checkpoint prefix")
    table = path.read_bytes()
    if len(table) < _FOOTER_SIZE:
        raise ValueError(f"{path}: too short to be a checkpoint index")
    footer = table[-_FOOTER_SIZE:]
    if struct.unpack("<Q", footer[-8:])[0] != _TABLE_MAGIC:
        raise ValueError(f"{path}: bad SSTable magic number; this is not a TensorFlow V2 checkpoint index")
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    entries: dict[str, TFTensorEntry] = {}
    for _, handle in _block_entries(_read_block(table, index_offset, index_size, path)):
        block_offset, hpos = _varint(handle, 0)
        block_size, _ = _varint(handle, hpos)
        for key, value in _block_entries(_read_block(table, block_offset, block_size, path)):
            if key == b"":
                continue  # BundleHeaderProto: number of shards, endianness, version
            name = key.decode("utf-8")
            entries[name] = _parse_entry(name, value)
    return entries


def read_tf_checkpoint(
    prefix: str | os.PathLike[str],
    names: list[str] | None = None,
    *,
    verify: bool = True,
) -> dict[str, np.ndarray]:
    """Read variables of a TensorFlow V2 checkpoint into numpy arrays (all of them when ``names`` is None).

    With ``verify`` (default) every tensor's bytes are checked against the CRC-32C stored in the index.
    """
    entries = list_tf_checkpoint(prefix)
    wanted = list(entries) if names is None else names
    missing = [n for n in wanted if n not in entries]
    if missing:
        raise KeyError(f"{_index_path(prefix)}: no variables named {missing}; available: {sorted(entries)}")
    num_shards = 1 + max((e.shard_id for e in entries.values()), default=0)
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name in wanted:
        entry = entries[name]
        if entry.shard_id not in shards:
            shard_path = Path(f"{prefix}.data-{entry.shard_id:05d}-of-{num_shards:05d}")
            if not shard_path.is_file():
                raise FileNotFoundError(f"{shard_path}: data shard of the checkpoint is missing")
            shards[entry.shard_id] = shard_path.read_bytes()
        raw = shards[entry.shard_id][entry.offset : entry.offset + entry.size]
        expected = int(np.prod(entry.shape, dtype=np.int64)) * entry.dtype.itemsize
        if len(raw) != entry.size or entry.size != expected:
            raise ValueError(
                f"variable {name!r}: {len(raw)} bytes on disk, {expected} expected from its shape"
            )
        if verify and crc32c(raw) != entry.crc32c:
            raise ValueError(f"variable {name!r}: CRC-32C mismatch; the checkpoint data file is corrupt")
        out[name] = np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape).copy()
    return out
