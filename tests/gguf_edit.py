"""Rewrite one integer of a GGUF file's metadata in place (a test model with another trained context, say).
A few lines of the format (the GGUF specification in the ggml repository), so no gguf package is needed."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

# GGUF value types: fixed sizes, 8 is a string, 9 an array.
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_INTEGERS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 10: "Q", 11: "q"}


def _u64(f: BinaryIO) -> int:
    return int(struct.unpack("<Q", f.read(8))[0])


def _skip(f: BinaryIO, value_type: int) -> None:
    if value_type == 8:
        f.seek(_u64(f), 1)
    elif value_type == 9:
        item_type, count = struct.unpack("<IQ", f.read(12))
        if item_type in _SIZES:
            f.seek(_SIZES[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip(f, item_type)
    else:
        f.seek(_SIZES[value_type], 1)


def set_integer(path: Path, key: str, value: int) -> None:
    """Overwrite the integer metadata value `key` of the GGUF file at `path` (same type, so nothing moves)."""
    with path.open("r+b") as f:
        magic, _version, _tensors, entries = struct.unpack("<4sIQQ", f.read(24))
        assert magic == b"GGUF", f"{path} is not a GGUF file"
        for _ in range(entries):
            name = f.read(_u64(f)).decode()
            (value_type,) = struct.unpack("<I", f.read(4))
            if name == key:
                assert value_type in _INTEGERS, f"{key} is not an integer (type {value_type})"
                f.write(struct.pack("<" + _INTEGERS[value_type], value))
                return
            _skip(f, value_type)
    raise KeyError(f"{key} is not in {path}'s metadata")
