"""The safetensors format (Hugging Face), read and written with numpy only (no `safetensors` package needed).

Layout of a file (src/io/safetensors.ts has the same description):
  bytes [0, 8)      N, the header length, unsigned 64-bit little endian
  bytes [8, 8+N)    the header: UTF-8 JSON {"__metadata__"?: {str: str}, name: {dtype, shape, data_offsets}, ...},
                    padded with spaces so that 8+N is a multiple of 8
  bytes [8+N, EOF)  the data; offsets relative to its start; row-major, little endian; the tensors tile it exactly.

The writer follows the reference implementation (and ddpm-ts's serializeSafetensors) byte for byte: tensors sorted by
descending dtype then name, compact JSON with "__metadata__" first (keys sorted), spaces to a multiple of 8. So a
checkpoint read here and written back has the bytes ddpm-ts wrote.
"""
from __future__ import annotations

import json
import struct
from typing import Mapping

import numpy as np

from .jsonjs import stringify

__all__ = ['SafetensorsError', 'Tensors', 'parse', 'read', 'serialize']

MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = '__metadata__'

# dtype -> (rank in the reference enum, numpy little-endian dtype); the writer sorts by rank, descending
DTYPES: dict[str, tuple[int, str]] = {
    'BOOL': (0, '|b1'), 'U8': (1, '|u1'), 'I8': (2, '|i1'), 'I16': (5, '<i2'), 'U16': (6, '<u2'), 'F16': (7, '<f2'),
    'I32': (9, '<i4'), 'U32': (10, '<u4'), 'F32': (11, '<f4'), 'F64': (12, '<f8'), 'I64': (13, '<i8'), 'U64': (14, '<u8'),
}
_BY_NUMPY = {np.dtype(v[1]): k for k, v in DTYPES.items()}

Tensors = dict[str, np.ndarray]


class SafetensorsError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(f'safetensors: {message}')


def parse(data: bytes, where: str = 'file') -> tuple[Tensors, dict[str, str]]:
    """(tensors, metadata) of a complete safetensors file; each tensor is a fresh, writable array."""
    if len(data) < 8:
        raise SafetensorsError(f'{where}: {len(data)} bytes is too small to hold the 8-byte header length (truncated?)')
    (n,) = struct.unpack('<Q', data[:8])
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(f'{where}: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit (not a safetensors file?)')
    if 8 + n > len(data):
        raise SafetensorsError(f'{where}: header length {n} runs past the end of the {len(data)}-byte file (truncated?)')
    try:
        header = json.loads(data[8:8 + n].decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f'{where}: header is not valid JSON ({e})') from None
    if not isinstance(header, dict):
        raise SafetensorsError(f'{where}: header must be a JSON object')
    base, size = 8 + n, len(data) - 8 - n
    metadata: dict[str, str] = {}
    spans: list[tuple[int, int, str]] = []
    tensors: Tensors = {}
    for name, v in header.items():
        if name == METADATA_KEY:
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
                raise SafetensorsError(f'{where}: "{METADATA_KEY}" must be an object of strings')
            metadata = dict(v)
            continue
        if not isinstance(v, dict) or v.get('dtype') not in DTYPES:
            raise SafetensorsError(f"{where}: tensor '{name}': unknown dtype {v.get('dtype') if isinstance(v, dict) else v!r}")
        shape, offsets = v.get('shape'), v.get('data_offsets')
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise SafetensorsError(f"{where}: tensor '{name}': bad shape {shape!r}")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) and o >= 0 for o in offsets):
            raise SafetensorsError(f"{where}: tensor '{name}': bad data_offsets {offsets!r}")
        begin, end = offsets
        dt = np.dtype(DTYPES[v['dtype']][1])
        if not begin <= end <= size or end - begin != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise SafetensorsError(f"{where}: tensor '{name}': data_offsets [{begin},{end}] do not fit {v['dtype']} {shape} in {size} bytes (truncated?)")
        spans.append((begin, end, name))
        tensors[name] = np.frombuffer(data, dtype=dt, count=(end - begin) // dt.itemsize, offset=base + begin).reshape(shape).copy()
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise SafetensorsError(f"{where}: tensor '{name}' at [{begin},{end}] {'overlaps' if begin < pos else 'leaves a hole before'} its neighbour")
        pos = end
    if pos != size:
        raise SafetensorsError(f'{where}: tensors cover {pos} bytes of the {size}-byte data buffer (trailing bytes)')
    return tensors, metadata


def read(path: str) -> tuple[Tensors, dict[str, str]]:
    with open(path, 'rb') as f:
        return parse(f.read(), path)


def serialize(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Safetensors bytes, deterministic (see the module header); arrays of any dtype in DTYPES."""
    entries = []
    for name, a in tensors.items():
        if name == METADATA_KEY:
            raise SafetensorsError(f'"{METADATA_KEY}" is reserved')
        a = np.asarray(a)
        if not a.flags.c_contiguous:
            a = a.copy(order='C')  # (not ascontiguousarray: it makes a 0-d array 1-d)
        key = _BY_NUMPY.get(a.dtype.newbyteorder('<') if a.dtype.byteorder == '>' else a.dtype)
        if key is None:
            raise SafetensorsError(f"tensor '{name}': dtype {a.dtype} is not supported")
        entries.append((-DTYPES[key][0], name, key, a.astype(DTYPES[key][1], copy=False)))
    entries.sort(key=lambda e: (e[0], e[1]))  # Python compares str by code point, as the reference (UTF-8 bytes)
    parts: list[str] = []
    if metadata is not None:
        parts.append(stringify(METADATA_KEY) + ':{' + ','.join(stringify(k) + ':' + stringify(metadata[k]) for k in sorted(metadata)) + '}')
    offset = 0
    for _, name, key, a in entries:
        shape = ','.join(str(d) for d in a.shape)
        parts.append(f'{stringify(name)}:{{"dtype":"{key}","shape":[{shape}],"data_offsets":[{offset},{offset + a.nbytes}]}}')
        offset += a.nbytes
    head = ('{' + ','.join(parts) + '}').encode('utf-8')
    head += b' ' * (-len(head) % 8)
    return b''.join([struct.pack('<Q', len(head)), head, *(a.tobytes() for *_, a in entries)])
