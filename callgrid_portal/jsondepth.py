"""JSON nested deeper than any request of ours needs is refused where it is parsed.

Python's JSON parser, and every recursive walk over a parsed value (validators, the encoder
that stores it), raise ``RecursionError`` near a depth of a thousand: an answer of 500 for a
request that is merely malformed. Nothing the portal takes is nested more than a few levels.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32
TOO_DEEP_MESSAGE = f"JSON nested more than {MAX_DEPTH} levels deep is not accepted."


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and objects inside ``value`` nest more than ``limit`` levels."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
