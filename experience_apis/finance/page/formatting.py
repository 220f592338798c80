"""How the page writes figures and refusals for people."""

from __future__ import annotations

from decimal import Decimal

__all__ = ["age", "amount", "refusal"]

# What a refused action's code means to the person who clicked.
_REFUSALS = {
    "invalid_transition": "it is not open any more, or its kind has no work to retry "
    "(resolve it with a note instead)",
    "not_found": "there is no such exception",
    "idempotency_key_reused": "the form was sent again with different content; reload the "
    "page and try once more",
    "idempotency_in_flight": "the same action is still running; wait a moment",
    "invalid_request": "a resolution needs a note (1 to 1000 characters)",
}


def amount(value: Decimal | None) -> str:
    """A money amount with thousands separators, as exact as it is stored."""
    if value is None:
        return "—"
    return f"{value:,f}"


def age(seconds: int) -> str:
    """A waiting time, two units at most: ``45s``, ``12m 5s``, ``3h 20m``, ``2d 4h``."""
    units = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
    parts = []
    for name, size in units:
        if seconds >= size or (name == "s" and not parts):
            parts.append(f"{seconds // size}{name}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def refusal(code: str, exception_id: str) -> str:
    why = _REFUSALS.get(code, f"it was refused ({code or 'unknown reason'})")
    return f"The action on {exception_id or 'the exception'} did not go through: {why}."
