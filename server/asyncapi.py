"""The sockets' contract as an AsyncAPI 3.0 document, generated from the frame models
(``web.frames``, ``driver_api.frames``): one channel per socket, a message per frame,
and per socket one operation for what the server receives and one for what it sends.

The payload schemas are pydantic's JSON Schema of the models, so the document cannot
say something the sockets do not do. ``docs/websocket.md`` stays the guide for people:
resume, close codes, the order of the checks. Client frames are described as the server
reads them (validation schemas), server frames as it writes them (serialization).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from driver_api.frames import DriverServerFrame
from web.frames import (
    DriverClientFrame,
    RiderClientFrame,
    RiderServerFrame,
    frame_type,
    members,
)

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_REF = "#/components/schemas/{model}"

_CONNECTING = (
    "The token comes from `Authorization: Bearer <token>` or `?token=`. A refused "
    "connection gets an `error` frame, then close 4401 or 4403. Resume with "
    "`?last_event_id=N` (docs/websocket.md)."
)
# The query parameters both sockets read (the ws binding's ``query``).
_QUERY = {
    "type": "object",
    "properties": {
        "token": {
            "type": "string",
            "description": "The bearer token, when no Authorization header is sent.",
        },
        "last_event_id": {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "Resume after this event id; anything but digits is ignored.",
        },
    },
}

# (channel id, address, role, description, client → server union, server → client union)
SOCKETS: list[tuple[str, str, str, str, Any, Any]] = [
    (
        "driverSocket",
        "/v1/drivers/ws",
        "driver",
        "A member driver's phone: status, positions and answers to offers in; offers, "
        "trip events, fare votes and where-to-wait advice out.",
        DriverClientFrame,
        DriverServerFrame,
    ),
    (
        "riderSocket",
        "/v1/riders/ws",
        "rider",
        "A rider's phone: trip updates and the driver's position out; only `ack` in.",
        RiderClientFrame,
        RiderServerFrame,
    ),
]


def message_key(model: type[BaseModel]) -> str:
    """``offer.expired`` → ``offerExpired``: the message's key in the document."""
    head, *rest = frame_type(model).split(".")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _summary(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def asyncapi_document(version: str) -> dict[str, Any]:
    """The AsyncAPI document of the rider and driver sockets, ``version`` being the
    API's (the OpenAPI document's ``info.version``)."""
    modes: dict[type[BaseModel], JsonSchemaMode] = {}
    for _, _, _, _, client, server in SOCKETS:
        modes.update({m: "validation" for m in members(client)})
        modes.update({m: "serialization" for m in members(server)})
    _, definitions = models_json_schema(list(modes.items()), ref_template=SCHEMA_REF)
    schemas = definitions.get("$defs", {})

    messages = {
        message_key(model): {
            "name": frame_type(model),
            "title": frame_type(model),
            "summary": _summary(model),
            "contentType": "application/json",
            "payload": {"$ref": SCHEMA_REF.format(model=model.__name__)},
        }
        for model in modes
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel, address, role, description, client, server in SOCKETS:
        inbound, outbound = members(client), members(server)
        channels[channel] = {
            "address": address,
            "title": f"{role} socket",
            "description": f"{description} {_CONNECTING}",
            "messages": {
                message_key(m): {"$ref": f"#/components/messages/{message_key(m)}"}
                for m in [*inbound, *outbound]
            },
            "bindings": {"ws": {"method": "GET", "query": _QUERY, "bindingVersion": "0.1.0"}},
        }
        for action, models in (("receive", inbound), ("send", outbound)):
            direction = "from" if action == "receive" else "to"
            operations[f"{action}{channel[:1].upper()}{channel[1:]}Frames"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": f"Frames the server {action}s {direction} the {role}'s phone.",
                "messages": [
                    {"$ref": f"#/channels/{channel}/messages/{message_key(m)}"} for m in models
                ],
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "coopride sockets",
            "version": version,
            "description": "The rider and driver WebSockets of coopride, a dispatch backend "
            "for a driver-owned ride-hailing co-op. Generated from the frame models; "
            "docs/websocket.md is the guide (resume, acks, close codes, error codes).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8000",
                "protocol": "ws",
                "description": "`coopride serve`; in production wss behind nginx.",
                "security": [
                    {"$ref": "#/components/securitySchemes/bearer"},
                    {"$ref": "#/components/securitySchemes/queryToken"},
                ],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer <token>",
                },
                "queryToken": {
                    "type": "httpApiKey",
                    "name": "token",
                    "in": "query",
                    "description": "?token=<token>, for browsers (they cannot set headers)",
                },
            },
        },
    }
