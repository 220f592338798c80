"""Journal building for AR documents: one balanced GL entry per document.

Why a small ledger of our own rather than python-accounting or beancount: the ERP here is
a stand-in whose ledger must live in the gateway's own migrated tables, written with
async SQLAlchemy Core inside the same transaction as the document, on SQLite and
PostgreSQL. python-accounting brings its own ORM schema and synchronous sessions, and
beancount is a text-file ledger with no database storage; adapting either would cost
more than the rule itself, which is: aggregate per account, omit zero lines, and refuse
an entry whose debits and credits differ.

    invoice / debit_memo:  Dr 1200 AR (gross)   Cr revenue per item account (net)
                                                Cr 2200 tax payable (tax)
    credit_memo:           the same with the sides swapped (amounts stay positive)
    payment:               Dr 1000 bank (amount)  Cr 1200 AR (amount)
    revenue recognition:   Dr 2400 contract balance  Cr revenue per item account
                           (per account the net of the day; a negative net swaps sides)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from canonical.errors import BusinessRuleViolation
from canonical.model import JournalLine
from canonical.money import round_money
from system_apis.erp.reference.chart import (
    ACCOUNTS_RECEIVABLE,
    BANK,
    CONTRACT_BALANCE,
    TAX_PAYABLE,
)

__all__ = [
    "Posting",
    "assert_balanced",
    "build_journal",
    "build_payment_journal",
    "build_revenue_journal",
]

Posting = tuple[str, Decimal, Decimal]  # (revenue account, net amount, tax amount)


def build_journal(kind: str, currency: str, postings: Iterable[Posting]) -> list[JournalLine]:
    """The lines of the entry for a document of ``kind`` whose lines book ``postings``.

    Amounts are positive and already rounded; the result is balanced or this raises."""
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    tax = Decimal(0)
    for account, net, tax_amount in postings:
        revenue[account] += net
        tax += tax_amount
    gross = sum(revenue.values(), Decimal(0)) + tax
    zero = round_money(Decimal(0), currency)

    # (account, amount on the document's "receivable" side?) in a stable, readable order:
    # the AR line first, then revenue accounts by number, then tax.
    sides = [(ACCOUNTS_RECEIVABLE, gross, True)]
    sides += [(account, revenue[account], False) for account in sorted(revenue)]
    sides.append((TAX_PAYABLE, tax, False))

    reverse = kind == "credit_memo"
    lines = []
    for account, amount, receivable_side in sides:
        if amount == 0:
            continue
        amount = round_money(amount, currency)
        if receivable_side != reverse:
            lines.append(JournalLine(account=account, debit=amount, credit=zero))
        else:
            lines.append(JournalLine(account=account, debit=zero, credit=amount))
    assert_balanced(lines)
    return lines


def build_payment_journal(currency: str, amount: Decimal) -> list[JournalLine]:
    """The entry of a customer payment: the cash arrives at the bank and the receivable
    shrinks by as much. ``amount`` is positive and already rounded."""
    zero = round_money(Decimal(0), currency)
    amount = round_money(amount, currency)
    lines = [
        JournalLine(account=BANK, debit=amount, credit=zero),
        JournalLine(account=ACCOUNTS_RECEIVABLE, debit=zero, credit=amount),
    ]
    assert_balanced(lines)
    return lines


def build_revenue_journal(
    currency: str, recognised: Iterable[tuple[str, Decimal]]
) -> list[JournalLine]:
    """The entry recognising revenue: per revenue account the signed amount recognised
    (positive: credit revenue; negative: a reversal, debit revenue), against the contract
    balance for the net. Amounts are already rounded; zero accounts are left out."""
    net: dict[str, Decimal] = defaultdict(Decimal)
    for account, amount in recognised:
        net[account] += amount
    zero = round_money(Decimal(0), currency)
    lines = []
    for account, amount in [(a, -net[a]) for a in sorted(net)] + [
        (CONTRACT_BALANCE, sum(net.values(), Decimal(0)))
    ]:
        amount = round_money(amount, currency)
        if amount > 0:
            lines.append(JournalLine(account=account, debit=amount, credit=zero))
        elif amount < 0:
            lines.append(JournalLine(account=account, debit=zero, credit=-amount))
    assert_balanced(lines)
    return lines


def assert_balanced(lines: Iterable[JournalLine]) -> None:
    """Refuse an entry whose debits and credits differ (or that has negative sides)."""
    debit = credit = Decimal(0)
    for line in lines:
        if line.debit < 0 or line.credit < 0:
            raise BusinessRuleViolation(
                f"journal line on {line.account} has a negative side", code="unbalanced_journal"
            )
        debit += line.debit
        credit += line.credit
    if debit != credit:
        raise BusinessRuleViolation(
            f"journal does not balance: debits {debit} != credits {credit}",
            code="unbalanced_journal",
        )
