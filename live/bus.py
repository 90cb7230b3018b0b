"""The ZeroMQ bus between the daemon's processes: endpoint names and the wire codec.

=============  =========  ===============================================================
endpoint       pattern    carries
=============  =========  ===============================================================
``md``         PUB/SUB    feed -> engine: one bar, raw :data:`~trader.data.BAR_DTYPE` bytes,
                          under the symbol; feed -> execution: the feed's state (msgpack
                          ``{"stale", "data_age_s"}``) under :data:`FEED_STATE_TOPIC`
``intents``    PUSH/PULL  engine -> execution: risk-approved intents, ``[body, MAC]``
``exec``       PUB/SUB    execution -> engine: order acknowledgements, fills, cancels
``audit``      PUSH/PULL  engine, execution, daemon -> audit writer: order events
``audit_ack``  PUB/SUB    audit writer -> producers: highest ``source_seq`` stored per producer
``control``    PUB/SUB    daemon -> all: kill, resume
``status``     PUSH/PULL  all -> daemon: JSON status snapshots for the control API
=============  =========  ===============================================================

The hot path (bar -> intent on the execution socket) is two hops: ``md`` and
``intents``. Event sockets never drop: their high-water marks are unlimited.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import zmq

#: ``md`` topic of the feed's state messages (no symbol starts with a NUL byte).
FEED_STATE_TOPIC = b"\x00feed"
#: ``md`` topic of the feed's notice that a new market-data connection is up, sent before
#: its first bar (``{"connection": n}``, n from 1): the engine checks the next bar for
#: bars missed while the stream was down (:mod:`live.warmup`, the seam).
FEED_CONNECTED_TOPIC = b"\x00connected"

_S = TypeVar("_S", bound=zmq.Socket)

ENDPOINTS = ("md", "intents", "exec", "audit", "audit_ack", "control", "status")


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


def shares(x: float) -> str:
    """Format a share quantity without exponent or trailing zeros (``100.0`` -> ``"100"``)."""
    return f"{x:.9f}".rstrip("0").rstrip(".")


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


#: Wire layout of an order intent (little-endian): seq, ts_event, ts_recv, ts_intent
#: (int64 ns since epoch UTC), qty (float64 shares, > 0), ref_price (float64 USD),
#: side (``b`` buy / ``s`` sell), then NUL-padded ASCII: symbol (8 bytes),
#: client_order_id (48), session_id (16), order_type (8), time_in_force (4).
#: One ``struct`` call packs or unpacks it.
INTENT = struct.Struct("<qqqqddc8s48s16s8s4s")
_TEXT_FIELDS = ("symbol", "client_order_id", "session_id", "order_type", "time_in_force")
SIDES = {b"b": "buy", b"s": "sell"}
MAC_SIZE = 16


def intent_mac(key: bytes, body: bytes) -> bytes:
    """Keyed BLAKE2b (RFC 7693, used as a MAC) of an intent body, 16 bytes.

    Only the risk gate and the execution process hold ``key`` (a per-session secret made
    by the daemon), so an intent that did not pass the gate cannot carry a valid MAC.
    """
    return hashlib.blake2b(body, key=key, digest_size=MAC_SIZE).digest()


def encode_intent(
    key: bytes,
    *,
    seq: int,
    ts_event: int,
    ts_recv: int,
    qty: float,
    ref_price: float,
    side: str,
    symbol: str,
    client_order_id: str,
    session_id: str,
    order_type: str = "market",
    time_in_force: str = "day",
) -> list[bytes]:
    """Pack and sign an approved intent: two frames, ``[body, mac]``.

    ``ts_intent`` is stamped here, just before the frames are returned for sending.
    """
    text = (symbol, client_order_id, session_id, order_type, time_in_force)
    body = INTENT.pack(
        seq,
        ts_event,
        ts_recv,
        time.time_ns(),
        qty,
        ref_price,
        b"b" if side == "buy" else b"s",
        *(t.encode() for t in text),
    )
    return [body, intent_mac(key, body)]


def decode_intent(key: bytes, frames: list[bytes]) -> dict[str, Any]:
    """Verify and unpack an intent.

    Returns
    -------
    dict
        ``seq, ts_event, ts_recv, ts_intent, qty, ref_price, side, symbol,
        client_order_id, session_id, order_type, time_in_force``.

    Raises
    ------
    ValueError
        Malformed frames, or a MAC that is missing or not the gate's ("unapproved").
    """
    if len(frames) != 2 or len(frames[0]) != INTENT.size:
        sizes = [len(f) for f in frames]
        raise ValueError(f"malformed intent: {len(frames)} frames of sizes {sizes}")
    body, mac = frames
    if not hmac.compare_digest(intent_mac(key, body), mac):
        raise ValueError("unapproved: missing or invalid risk-gate MAC")
    seq, ts_event, ts_recv, ts_intent, qty, ref_price, side, *text = INTENT.unpack(body)
    if side not in SIDES:
        raise ValueError(f"malformed intent: side {side!r}")
    out: dict[str, Any] = {
        "seq": seq,
        "ts_event": ts_event,
        "ts_recv": ts_recv,
        "ts_intent": ts_intent,
        "qty": qty,
        "ref_price": ref_price,
        "side": SIDES[side],
    }
    for name, raw in zip(_TEXT_FIELDS, text, strict=True):
        out[name] = raw.rstrip(b"\0").decode()
    return out
