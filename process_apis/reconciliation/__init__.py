"""Reconciliation: per period, events = invoiced quantities, Meterline documents = ERP
documents, ERP journals balanced; every variance raised as an exception."""

from process_apis.reconciliation.report import ReconciliationReport, ReconciliationVariance
from process_apis.reconciliation.service import EXCEPTION_KIND, ReconciliationService

__all__ = [
    "EXCEPTION_KIND",
    "ReconciliationReport",
    "ReconciliationService",
    "ReconciliationVariance",
]
