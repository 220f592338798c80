"""The reference ERP's chart of accounts: the control accounts every AR document and
every payment touches.

Account classes by first digit: 1 assets, 2 liabilities, 4 revenue. Revenue accounts come
from the items (``ErpItem.revenue_account``) and must be in class 4, so an item can never
book to a control account.
"""

BANK = "1000"  # asset: the bank account customer payments arrive on (debit-normal)
ACCOUNTS_RECEIVABLE = "1200"  # asset: what customers owe (debit-normal)
TAX_PAYABLE = "2200"  # liability: output tax owed to the authorities (credit-normal)
# The contract balance of revenue schedules: credited when a document's revenue is
# deferred, debited as it is recognised. A debit balance is unbilled revenue (recognised
# before it was invoiced), a credit balance deferred revenue (invoiced before recognised).
CONTRACT_BALANCE = "2400"

__all__ = ["ACCOUNTS_RECEIVABLE", "BANK", "CONTRACT_BALANCE", "TAX_PAYABLE"]
