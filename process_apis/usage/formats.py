"""Wire formats of usage ingest: canonical JSON batches and CloudEvents 1.0 (structured
and batch mode), decoded by msgspec into one shape, ``IngestEvent``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from canonical import errors
from canonical.model import Base

__all__ = [
    "CONTENT_TYPES",
    "CloudEvent",
    "IngestEvent",
    "decode_events",
]

Text255 = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class IngestEvent(Base):
    """A canonical usage event. (``source``, ``id``) identifies it for deduplication."""

    id: Text255
    source: Text255
    event_type: EventType
    customer_id: Text255
    timestamp: Timestamp | None = None  # receipt time when absent
    properties: dict[str, Any] = {}


class CloudEvent(msgspec.Struct):
    """CloudEvents 1.0 attributes Meterline reads; extension attributes are allowed.

    ``type`` is the meter event type, ``subject`` the customer, ``data`` the properties."""

    specversion: Literal["1.0"]
    id: Text255
    source: Text255
    type: EventType
    subject: Text255
    time: Timestamp | None = None
    datacontenttype: Literal["application/json"] | None = None
    dataschema: str | None = None
    data: dict[str, Any] | None = None

    def as_ingest(self) -> IngestEvent:
        return IngestEvent(
            id=self.id,
            source=self.source,
            event_type=self.type,
            customer_id=self.subject,
            timestamp=self.time,
            properties=self.data or {},
        )


_canonical = msgspec.json.Decoder(list[IngestEvent])
_cloud_one = msgspec.json.Decoder(CloudEvent)
_cloud_batch = msgspec.json.Decoder(list[CloudEvent])

CONTENT_TYPES = (
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_events(body: bytes, content_type: str | None) -> list[IngestEvent]:
    """Decode a request body by its media type; a malformed body is ``InvalidRequest``."""
    media = _media_type(content_type)
    try:
        if media == "application/json":
            return _canonical.decode(body)
        if media == "application/cloudevents+json":
            return [_cloud_one.decode(body).as_ingest()]
        if media == "application/cloudevents-batch+json":
            return [event.as_ingest() for event in _cloud_batch.decode(body)]
    except msgspec.ValidationError as exc:
        raise errors.InvalidRequest(f"invalid event batch: {exc}", code="invalid_events") from exc
    except msgspec.DecodeError as exc:
        raise errors.InvalidRequest(f"malformed JSON: {exc}", code="malformed_body") from exc
    raise errors.UnsupportedMediaType(
        f"content type {media or '(none)'!r} is not accepted; use one of {', '.join(CONTENT_TYPES)}"
    )
