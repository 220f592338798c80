"""Pure checks of the reference CRM: what a CRM refuses before anything is written."""

from __future__ import annotations

import re

from canonical.errors import BusinessRuleViolation, Conflict, InvalidRequest
from canonical.model import Customer, Subscription
from canonical.money import is_currency
from system_apis.crm.port import ID_PATTERN

__all__ = ["check_customer", "check_subscription", "is_id", "require_id"]

_ID = re.compile(ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_id(value: object) -> bool:
    """Whether ``value`` can be a key at all; anything else cannot exist, so lookups
    answer 'not found' without sending (possibly unstorable) text to the database."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def require_id(value: str, what: str) -> None:
    if not is_id(value):
        raise BusinessRuleViolation(
            f"{what} {value[:80]!r} is not a valid identifier", code="invalid_id"
        )


def _text(value: str | None, field: str, max_length: int) -> None:
    if value is None:
        return
    if not value or len(value) > max_length or _CONTROL.search(value):
        raise InvalidRequest(
            f"{field} must be 1-{max_length} printable characters", code="invalid_field"
        )


def check_customer(customer: Customer) -> None:
    require_id(customer.id, "customer id")
    require_id(customer.legal_entity_id, "legal_entity_id")
    for field in ("parent_id", "partner_id"):
        value = getattr(customer, field)
        if value is not None:
            require_id(value, field)
    _text(customer.name, "name", 200)
    _text(customer.tax_id, "tax_id", 64)
    for field in ("billing_country", "us_state"):
        value = getattr(customer, field)
        if value is not None and not re.fullmatch(r"[A-Z]{2}", value):
            raise InvalidRequest(f"{field} must be a two-letter code", code="invalid_field")
    if not is_currency(customer.currency):
        raise BusinessRuleViolation(
            f"unknown currency {customer.currency!r}", code="unknown_currency"
        )
    if customer.parent_id == customer.id:
        raise Conflict("a customer cannot be its own parent", code="parent_cycle")


def check_subscription(sub: Subscription) -> None:
    require_id(sub.id, "subscription id")
    require_id(sub.customer_id, "customer_id")
    require_id(sub.plan_id, "plan_id")
    if sub.end_date is not None and sub.end_date <= sub.start_date:
        raise BusinessRuleViolation(
            "end_date (exclusive) must be after start_date", code="invalid_term"
        )
    seen = set()
    for amendment in sub.amendments:
        require_id(amendment.plan_id, "amendment plan_id")
        check_amendment_date(sub, amendment.effective_from)
        if amendment.effective_from in seen:
            raise BusinessRuleViolation(
                f"two amendments take effect on {amendment.effective_from}",
                code="duplicate_amendment",
            )
        seen.add(amendment.effective_from)


def check_amendment_date(sub: Subscription, effective_from) -> None:
    if effective_from < sub.start_date or (
        sub.end_date is not None and effective_from >= sub.end_date
    ):
        raise BusinessRuleViolation(
            f"amendment effective {effective_from} falls outside the subscription term",
            code="amendment_outside_term",
        )
