"""Wire formats of usage ingest: canonical JSON batches and CloudEvents 1.0 (structured
and batch mode), decoded by msgspec into one shape, ``ReceivedEvent``.

``IngestEvent`` and ``CloudEvent`` are the documented shapes (the contract's request
body). Decoding uses twins whose ``properties``/``data`` stay raw JSON: ingest stores them
as sent, so building and re-encoding a dict per event would be wasted work."""

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
    "ReceivedEvent",
    "decode_events",
]

Text255 = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
# CloudEvents ``datacontenttype``: JSON, parameters allowed ("application/json; charset=utf-8").
JsonMediaType = Annotated[str, msgspec.Meta(pattern=r"^(?i:application/json)\s*(;.*)?$")]
EMPTY_OBJECT = msgspec.Raw(b"{}")


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
    datacontenttype: JsonMediaType | None = None
    dataschema: str | None = None
    data: dict[str, Any] | None = None


class ReceivedEvent(Base, gc=False):
    """``IngestEvent`` as decoded: ``properties`` is the raw JSON object sent. Holds no
    containers, so the garbage collector need not track the many of a batch."""

    id: Text255
    source: Text255
    event_type: EventType
    customer_id: Text255
    timestamp: Timestamp | None = None
    properties: msgspec.Raw = EMPTY_OBJECT


class _ReceivedCloudEvent(msgspec.Struct, gc=False):
    specversion: Literal["1.0"]
    id: Text255
    source: Text255
    type: EventType
    subject: Text255
    time: Timestamp | None = None
    datacontenttype: JsonMediaType | None = None
    dataschema: str | None = None
    data: msgspec.Raw = EMPTY_OBJECT  # absent or null: no properties
    # Binary data cannot carry usage properties: refused, never silently dropped.
    data_base64: str | None = None

    def as_received(self, index: int) -> ReceivedEvent:
        if self.data_base64 is not None:
            raise errors.InvalidRequest(
                f"invalid event batch: the event at index {index} carries data_base64; "
                "usage properties must be a JSON object in data",
                code="invalid_events",
            )
        data = EMPTY_OBJECT if bytes(self.data).strip() == b"null" else self.data
        return ReceivedEvent(self.id, self.source, self.type, self.subject, self.time, data)


_canonical = msgspec.json.Decoder(list[ReceivedEvent])
_cloud_one = msgspec.json.Decoder(_ReceivedCloudEvent)
_cloud_batch = msgspec.json.Decoder(list[_ReceivedCloudEvent])

CONTENT_TYPES = (
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _check_objects(events: list[ReceivedEvent]) -> list[ReceivedEvent]:
    """Properties must be JSON objects, as the contract says (raw decoding accepts any
    JSON value; a raw value starts at its first byte, never at whitespace)."""
    for index, event in enumerate(events):
        if bytes(event.properties)[:1] != b"{":
            raise errors.InvalidRequest(
                f"invalid event batch: properties of the event at index {index} must be "
                "a JSON object",
                code="invalid_events",
            )
    return events


def decode_events(body: bytes, content_type: str | None) -> list[ReceivedEvent]:
    """Decode a request body by its media type; a malformed body is ``InvalidRequest``."""
    media = _media_type(content_type)
    try:
        if media == "application/json":
            return _check_objects(_canonical.decode(body))
        if media == "application/cloudevents+json":
            return _check_objects([_cloud_one.decode(body).as_received(0)])
        if media == "application/cloudevents-batch+json":
            return _check_objects(
                [event.as_received(i) for i, event in enumerate(_cloud_batch.decode(body))]
            )
    except msgspec.ValidationError as exc:
        raise errors.InvalidRequest(f"invalid event batch: {exc}", code="invalid_events") from exc
    except msgspec.DecodeError as exc:
        raise errors.InvalidRequest(f"malformed JSON: {exc}", code="malformed_body") from exc
    raise errors.UnsupportedMediaType(
        f"content type {media or '(none)'!r} is not accepted; use one of {', '.join(CONTENT_TYPES)}"
    )
