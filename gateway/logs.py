"""Log lines of every Meterline process (gateway, worker, CLI): each carries the
correlation ID of the work it belongs to."""

from __future__ import annotations

import logging

from gateway.correlation import CorrelationLogFilter

__all__ = ["configure_logging"]


def configure_logging(level: str) -> None:
    root = logging.getLogger("meterline")
    if not any(isinstance(f, CorrelationLogFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.addFilter(CorrelationLogFilter())
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"
            )
        )
        root.addHandler(handler)
    root.setLevel(level)
