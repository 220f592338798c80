"""Splitting id lists for bounded requests and queries, shared by the reference systems
(bound-parameter limits) and the HTTP adapters (a contract's filter and body limits)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["sorted_chunks"]


def sorted_chunks(values: Iterable[str], size: int) -> Iterator[list[str]]:
    """The distinct ``values``, sorted, in lists of at most ``size`` (none when empty)."""
    ordered = sorted(set(values))
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]
