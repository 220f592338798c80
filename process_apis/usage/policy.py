"""Event-time policy: which event timestamps ingest accepts, relative to receipt time."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

__all__ = ["EventTimePolicy"]


class EventTimePolicy(msgspec.Struct, frozen=True):
    max_age: timedelta = timedelta(days=35)
    max_future: timedelta = timedelta(minutes=5)

    def window(self, received_at: datetime) -> tuple[datetime, datetime]:
        """The oldest and newest timestamps accepted at ``received_at`` (inclusive);
        older events are rejected ``event_too_old``, newer ``event_in_future``."""
        return received_at - self.max_age, received_at + self.max_future
