"""JSON text exactly as JavaScript's JSON.stringify writes it, so that the files this package writes (config.json,
state.json, safetensors metadata) have the bytes ddpm-ts would write for the same values.

Two things differ from Python's json module: numbers (JS writes 1e-8, 0.00001 and 1 where Python writes 1e-08,
1e-05 and 1.0; ECMA-262 Number::toString) and nothing else that a checkpoint holds (strings are escaped alike:
quote, backslash, \\b \\f \\n \\r \\t, other control characters as \\u00xx, everything else as it is).
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

__all__ = ['js_number', 'stringify']


def js_number(x: float | int) -> str:
    """ECMA-262 Number::toString(10) of a finite number (shortest round-trip digits, JS's choice of notation)."""
    if isinstance(x, bool):
        raise TypeError('bool is not a number here')
    if isinstance(x, int):
        x = float(x) if abs(x) >= 2 ** 53 else x
        if isinstance(x, int):
            return str(x)
    if not math.isfinite(x):
        return 'null'  # JSON.stringify(NaN) and (Infinity)
    if x == 0:
        return '0'  # -0 too
    sign = '-' if x < 0 else ''
    # repr gives the shortest digits that round-trip, as JS does; only the notation differs
    d = Decimal(repr(abs(x))).normalize()
    _, digits_t, exp = d.as_tuple()
    digits = ''.join(map(str, digits_t))
    k = len(digits)
    n = k + int(exp)  # value = 0.d1d2...dk × 10^n
    if k <= n <= 21:
        s = digits + '0' * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + '.' + digits[n:]
    elif -6 < n <= 0:
        s = '0.' + '0' * (-n) + digits
    else:
        e = n - 1
        mant = digits[0] + ('.' + digits[1:] if k > 1 else '')
        s = f"{mant}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + s


def _str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def stringify(value: Any, indent: int = 0, _level: int = 0) -> str:
    """JSON.stringify(value, null, indent) for dicts (insertion order), lists, strings, numbers, booleans, None."""
    pad = ' ' * indent
    if value is None:
        return 'null'
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, (int, float)):
        return js_number(value)
    if isinstance(value, str):
        return _str(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return '[]'
        items = [stringify(v, indent, _level + 1) for v in value]
        if not indent:
            return '[' + ','.join(items) + ']'
        inner = '\n' + pad * (_level + 1)
        return '[' + inner + (',' + inner).join(items) + '\n' + pad * _level + ']'
    if isinstance(value, dict):
        if not value:
            return '{}'
        items = [_str(str(k)) + (': ' if indent else ':') + stringify(v, indent, _level + 1) for k, v in value.items()]
        if not indent:
            return '{' + ','.join(items) + '}'
        inner = '\n' + pad * (_level + 1)
        return '{' + inner + (',' + inner).join(items) + '\n' + pad * _level + '}'
    raise TypeError(f'cannot write {type(value).__name__} as JSON')
