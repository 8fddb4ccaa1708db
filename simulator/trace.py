"""trace.jsonl: one JSON object per line, in simulated-time order.

Records: datagrams as sent (node, direction, destination, fate, first line, Call-ID, CSeq),
QSA deliveries, and the agents' own TraceEvents.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from simulator.network import Datagram


def _header(data: bytes, name: bytes) -> str | None:
    start = data.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    stop = data.find(b"\r\n", start + 2)
    return data[start + len(name) + 3 : stop].strip().decode("utf-8", "replace")


class TraceWriter:
    """Writes trace records; in a farm shard every record also names the ``shard`` (handles
    and node names repeat across the shards of one agent instance)."""

    def __init__(self, stream: TextIO, shard: str | None = None) -> None:
        self._stream = stream
        self._shard = shard
        self.records = 0

    def _write(self, record: dict[str, Any]) -> None:
        if self._shard is not None:
            record["shard"] = self._shard
        self._stream.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        self.records += 1

    def datagram(self, datagram: Datagram) -> None:
        data = datagram.data
        end = data.find(b"\r\n")
        record: dict[str, Any] = {
            "t": round(datagram.time, 6),
            "node": datagram.source_node,
            "dir": "send",
            "to": datagram.destination_node,
            "fate": datagram.fate,
            "first_line": data[: end if end >= 0 else 80].decode("utf-8", "replace"),
            "call_id": _header(data, b"Call-ID"),
            "cseq": _header(data, b"CSeq"),
        }
        if datagram.transport != "udp":  # (UDP records stay as they were)
            record["transport"] = datagram.transport
            record["connection"] = datagram.connection
        self._write(record)

    def delivery(self, node: str, now: float, message: Any) -> None:
        record: dict[str, Any] = {
            "t": round(now, 6),
            "node": node,
            "dir": "deliver",
            "handle": message.handle,
            "record": message.record,
            "subscriber": message.subscriber,
            "status": message.status,
            "reason": message.reason,
            "retry_at": message.retry_at,
        }
        # Issue 17 (only when set, so presence records stay as they were): the resource of
        # a list, the registration of a reg subscription.
        if message.resource is not None:
            record["list_uri"] = message.list_uri
            record["resource"] = message.resource
        if message.registration is not None:
            record["aor"] = message.registration.aor
            record["registration"] = message.registration.state
            record["contacts"] = [f"{c.id} {c.state} {c.event}"
                                  for c in message.registration.contacts]
        self._write(record)

    def event(self, node: str, now: float, kind: str, fields: dict[str, object]) -> None:
        self._write({"t": round(now, 6), "node": node, "dir": "event", "kind": kind, **fields})
