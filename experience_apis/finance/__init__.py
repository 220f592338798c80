"""Experience API and operations page for finance (``/experience/finance/v1``, ``/finance``):
the month-end close as finance works it — what came in, what was billed and posted, what
is held or failing, and what to do about it."""
