"""The ZeroMQ bus between the daemon's processes: endpoint names and the wire codec.

=============  =========  ===============================================================
endpoint       pattern    carries
=============  =========  ===============================================================
``md``         PUB/SUB    feed -> engine: one bar, raw :data:`~trader.data.BAR_DTYPE` bytes
``intents``    PUSH/PULL  engine -> execution: risk-approved order intents (signed)
``exec``       PUB/SUB    execution -> engine: order acknowledgements, fills, cancels
``audit``      PUSH/PULL  engine, execution, daemon -> audit writer: order events
``control``    PUB/SUB    daemon -> all: kill, resume
``status``     PUSH/PULL  all -> daemon: JSON status snapshots for the control API
=============  =========  ===============================================================

The hot path (bar -> intent on the execution socket) is two hops: ``md`` and
``intents``. Event sockets never drop: their high-water marks are unlimited.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import zmq

_S = TypeVar("_S", bound=zmq.Socket)

ENDPOINTS = ("md", "intents", "exec", "audit", "control", "status")

#: Fields of an order intent covered by the risk gate's signature, in order.
SIGNED_FIELDS = (
    "session_id",
    "seq",
    "client_order_id",
    "symbol",
    "side",
    "qty",
    "order_type",
    "time_in_force",
)


@dataclass(frozen=True)
class Bus:
    """IPC endpoint addresses of one daemon session (sockets under ``.var/ipc/<session>``)."""

    ipc_dir: Path

    def addr(self, name: str) -> str:
        """Return the ``ipc://`` address of endpoint ``name`` (one of :data:`ENDPOINTS`)."""
        if name not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {name!r}; known: {ENDPOINTS}")
        return f"ipc://{self.ipc_dir / name}"


def socket(
    ctx: zmq.Context[_S],
    kind: int,
    addr: str,
    *,
    bind: bool = False,
    subscribe: bytes | None = None,
) -> _S:
    """Create a socket with the bus's options: no send/receive high-water mark (events are
    never dropped), a 2 s linger so queued events flush on close."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.LINGER, 2000)
    if subscribe is not None:
        s.setsockopt(zmq.SUBSCRIBE, subscribe)
    (s.bind if bind else s.connect)(addr)
    return s


def pack(msg: dict[str, Any]) -> bytes:
    """Encode a message dict (msgpack)."""
    return msgpack.packb(msg, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    """Decode a message dict.

    Raises
    ------
    ValueError
        If ``data`` is not a msgpack map.
    """
    try:
        msg = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise ValueError(f"malformed bus message ({len(data)} bytes): {e}") from e
    if not isinstance(msg, dict):
        raise ValueError(f"bus message is a {type(msg).__name__}, not a map")
    return msg


def sign_intent(key: bytes, intent: dict[str, Any]) -> str:
    """HMAC-SHA256 (RFC 2104) over the intent's :data:`SIGNED_FIELDS`; hex digest.

    Only the risk gate and the execution process hold ``key`` (a per-session secret made
    by the daemon), so an intent that did not pass the gate cannot carry a valid
    signature.
    """
    payload = "\x1f".join(str(intent[f]) for f in SIGNED_FIELDS).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def verify_intent(key: bytes, intent: dict[str, Any]) -> bool:
    """Return True if ``intent["approval"]`` is the gate's signature of this intent."""
    try:
        expected = sign_intent(key, intent)
    except KeyError:
        return False
    return hmac.compare_digest(expected, str(intent.get("approval", "")))
