"""The reference ERP's chart of accounts: the control accounts every AR document touches.

Revenue accounts come from the items (``ErpItem.revenue_account``); they may be any
account number except these control accounts.
"""

ACCOUNTS_RECEIVABLE = "1200"  # asset: what customers owe (debit-normal)
TAX_PAYABLE = "2200"  # liability: output tax owed to the authorities (credit-normal)

CONTROL_ACCOUNTS = frozenset({ACCOUNTS_RECEIVABLE, TAX_PAYABLE})

__all__ = ["ACCOUNTS_RECEIVABLE", "CONTROL_ACCOUNTS", "TAX_PAYABLE"]
