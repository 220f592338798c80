"""Event-time policy: which event timestamps ingest accepts, relative to receipt time."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

__all__ = ["EventTimePolicy"]


class EventTimePolicy(msgspec.Struct, frozen=True):
    max_age: timedelta = timedelta(days=35)
    max_future: timedelta = timedelta(minutes=5)

    def reject_reason(self, timestamp: datetime, received_at: datetime) -> str | None:
        if timestamp < received_at - self.max_age:
            return "event_too_old"
        if timestamp > received_at + self.max_future:
            return "event_in_future"
        return None
