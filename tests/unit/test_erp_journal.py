"""The reference ERP's journal rule: debit AR, credit revenue per account and tax payable;
credit memos swap the sides; anything unbalanced is refused."""

from decimal import Decimal as D

import pytest

from canonical.errors import BusinessRuleViolation
from canonical.model import JournalLine
from system_apis.erp.reference.chart import ACCOUNTS_RECEIVABLE, TAX_PAYABLE
from system_apis.erp.reference.journal import assert_balanced, build_journal


def _sides(lines):
    return {line.account: (line.debit, line.credit) for line in lines}


def test_invoice_debits_receivable_and_credits_revenue_per_account_and_tax():
    lines = build_journal(
        "invoice",
        "EUR",
        [
            ("4000", D("100.00"), D("19.00")),
            ("4100", D("50.50"), D("9.60")),
            ("4000", D("10.00"), D("1.90")),  # same account: aggregated
        ],
    )
    # gross = 100 + 50.50 + 10 + 19 + 9.60 + 1.90 = 191.00
    assert _sides(lines) == {
        ACCOUNTS_RECEIVABLE: (D("191.00"), D("0")),
        "4000": (D("0"), D("110.00")),
        "4100": (D("0"), D("50.50")),
        TAX_PAYABLE: (D("0"), D("30.50")),
    }
    assert [line.account for line in lines] == [ACCOUNTS_RECEIVABLE, "4000", "4100", TAX_PAYABLE]


def test_debit_memo_books_like_an_invoice():
    assert _sides(build_journal("debit_memo", "EUR", [("4000", D("5.00"), D("0.95"))])) == {
        ACCOUNTS_RECEIVABLE: (D("5.95"), D("0")),
        "4000": (D("0"), D("5.00")),
        TAX_PAYABLE: (D("0"), D("0.95")),
    }


def test_credit_memo_swaps_the_sides():
    assert _sides(build_journal("credit_memo", "EUR", [("4000", D("20.00"), D("3.80"))])) == {
        ACCOUNTS_RECEIVABLE: (D("0"), D("23.80")),
        "4000": (D("20.00"), D("0")),
        TAX_PAYABLE: (D("3.80"), D("0")),
    }


def test_zero_tax_and_zero_revenue_lines_are_omitted():
    lines = build_journal(
        "invoice", "USD", [("4000", D("12.00"), D("0")), ("4200", D("0"), D("0"))]
    )
    assert _sides(lines) == {
        ACCOUNTS_RECEIVABLE: (D("12.00"), D("0")),
        "4000": (D("0"), D("12.00")),
    }


def test_zero_side_uses_the_currency_exponent():
    lines = build_journal("invoice", "JPY", [("4000", D("1000"), D("100"))])
    assert str(lines[0].credit) == "0" and str(lines[1].debit) == "0"
    lines = build_journal("invoice", "KWD", [("4000", D("1.000"), D("0.050"))])
    assert str(lines[0].credit) == "0.000"


def test_unbalanced_entry_is_refused():
    with pytest.raises(BusinessRuleViolation) as caught:
        assert_balanced(
            [
                JournalLine(account="1200", debit=D("10.00")),
                JournalLine(account="4000", credit=D("9.99")),
            ]
        )
    assert caught.value.code == "unbalanced_journal"


def test_negative_side_is_refused_even_when_it_balances():
    with pytest.raises(BusinessRuleViolation):
        assert_balanced(
            [
                JournalLine(account="1200", debit=D("-5")),
                JournalLine(account="4000", credit=D("-5")),
            ]
        )


def test_balanced_entry_passes():
    assert_balanced(
        [
            JournalLine(account="1200", debit=D("10.00")),
            JournalLine(account="4000", credit=D("8.00")),
            JournalLine(account="2200", credit=D("2.00")),
        ]
    )
