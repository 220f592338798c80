"""The finance operations page (``/finance``): server-rendered HTML over the finance
Experience API's service, signed in with a finance client's credentials (see
docs/adr/0015-finance-page-sign-in.md)."""
