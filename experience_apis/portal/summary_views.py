"""The customer portal's landing view: who the customer is, what it is subscribed to in
the open period, what it owes per currency and its latest invoice."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from canonical.model import Base, Customer
from experience_apis.portal.views import (
    PortalCustomer,
    PortalInvoiceSummary,
    customer_view,
    summary,
)
from process_apis.invoices.queries import IssuedDocument
from process_apis.receivables import CurrencyBalance
from process_apis.usage.terms import CustomerTerms

__all__ = ["PortalBalance", "PortalCustomerSummary", "PortalSubscription", "summary_view"]


class PortalSubscription(Base):
    id: str
    plan_id: str
    plan_name: str  # the plan in force on the open period's first active day
    start_date: date
    end_date: date | None  # exclusive; null: open-ended


class PortalBalance(Base):
    """What the customer owes in one currency, over the documents that stand in the
    ERP's receivables ledger or are on their way there (a posted invoice voided later
    counts with the credit memo reversing it, so the two cancel out)."""

    currency: str
    invoiced: Decimal  # invoices and debit memos
    credited: Decimal  # credit memos
    paid: Decimal
    balance: Decimal  # invoiced - credited - paid; negative: the customer is in credit
    open_documents: int  # invoices and debit memos with an amount still due


class PortalCustomerSummary(Base):
    customer: PortalCustomer
    open_period: str  # YYYY-MM, the period billing has not closed yet
    subscriptions: list[PortalSubscription]
    balances: list[PortalBalance]
    latest_invoice: PortalInvoiceSummary | None


def summary_view(
    customer: Customer,
    terms: CustomerTerms,
    balances: list[CurrencyBalance],
    latest: IssuedDocument | None,
) -> PortalCustomerSummary:
    subscriptions = []
    first_plan = {}
    for subscription, segment in terms.segments():
        first_plan.setdefault(subscription.id, segment.plan_id)
    for s in terms.subscriptions:
        plan = terms.plans.get(first_plan.get(s.id, ""))
        if plan is None:  # active in the period, yet no day of it in service
            continue
        subscriptions.append(
            PortalSubscription(
                id=s.id,
                plan_id=plan.id,
                plan_name=plan.name,
                start_date=s.start_date,
                end_date=s.end_date,
            )
        )
    return PortalCustomerSummary(
        customer=customer_view(customer),
        open_period=str(terms.period),
        subscriptions=subscriptions,
        balances=[
            PortalBalance(
                currency=b.currency,
                invoiced=b.invoiced,
                credited=b.credited,
                paid=b.paid,
                balance=b.open_balance,
                open_documents=b.open_documents,
            )
            for b in balances
        ],
        latest_invoice=summary(latest) if latest is not None else None,
    )
