"""JSON that every parser accepts: NaN and infinities (a float signal, an empty division) become null.

Python's json module writes them as ``NaN``/``Infinity`` by default, which is not JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(value: Any, **options) -> str:
    """``json.dumps`` with null for every non-finite float (checked strictly first: the common case is fast)."""
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, **options)
