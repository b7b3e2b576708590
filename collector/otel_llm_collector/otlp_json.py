"""OTLP/JSON <-> OTLP protobuf requests, with the quirks the OTLP specification adds to proto3 JSON.

Stock ``json_format`` reads every ``bytes`` field as base64, but OTLP/JSON writes trace and span ids as
hex strings (``"traceId": "5b8efff798038103d269b633813fc60c"``). Ids are therefore rewritten (hex ->
base64 on the way in, back on the way out) before ``ParseDict`` / after ``MessageToDict``; every other
bytes value (``bytesValue`` attributes) stays base64 as the specification says. The rest comes from
``json_format``: lowerCamelCase or original snake_case field names, enums as integers (or names),
64-bit integers as strings or numbers, unknown fields ignored.

A malformed document (not JSON, wrong types, non-hex id) raises `OtlpJsonError`; an id that is hex but of
the wrong length passes through, so that the decode stage rejects just that span (partial success).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

__all__ = ["OtlpJsonError", "message_to_dict", "message_to_json", "parse_json"]

_ID_FIELDS = frozenset({"traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"})

M = TypeVar("M", bound=Message)


class OtlpJsonError(ValueError):
    """The body is not a valid OTLP/JSON document of the expected request type."""


def _ids_hex_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise OtlpJsonError(f"{key}: expected a hex string, got {value[:64]!r}") from None
                out[key] = base64.b64encode(raw).decode("ascii")
            else:
                out[key] = _ids_hex_to_base64(value)
        return out
    if isinstance(node, list):
        return [_ids_hex_to_base64(item) for item in node]
    return node


def _ids_base64_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _ids_base64_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _ids_base64_to_hex(item)
    return node


def parse_json(body: bytes | str | dict[str, Any], message_type: type[M]) -> M:
    """Parse an OTLP/JSON body (bytes, text or an already loaded dict) into a protobuf request."""
    if isinstance(body, dict):
        document: Any = body
    else:
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise OtlpJsonError(f"invalid JSON: {exc}") from None
        except RecursionError:
            raise OtlpJsonError("invalid JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise OtlpJsonError("expected a JSON object at the top level")
    message = message_type()
    try:
        json_format.ParseDict(_ids_hex_to_base64(document), message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise OtlpJsonError(str(exc)) from None
    except RecursionError:
        raise OtlpJsonError("document nested too deeply") from None
    return message


def message_to_dict(message: Message) -> dict[str, Any]:
    """The OTLP/JSON form of a request as a dict: camelCase names, hex ids, integer enums."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    result: dict[str, Any] = _ids_base64_to_hex(document)
    return result


def message_to_json(message: Message) -> str:
    """One line of OTLP/JSON (the OpenTelemetry Collector file exporter's line format)."""
    return json.dumps(message_to_dict(message), separators=(",", ":"))
