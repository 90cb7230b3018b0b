"""Wire codec and intent signatures, configuration validation, feed bar validation."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pytest

from live.bus import decode_intent, encode_intent, pack, unpack
from live.config import load_config, resolve_mode
from live.feed import bar_record, parse_rfc3339_ns
from trader import REPO_ROOT
from trader.exceptions import ConfigurationError

INTENT = {
    "seq": 3,
    "ts_event": 1_294_065_000_000_000_000,
    "ts_recv": 1_294_065_000_000_500_000,
    "qty": 100.0,
    "ref_price": 127.05,
    "side": "buy",
    "symbol": "SPY",
    "client_order_id": "ema_rsi-s1-000003",
    "session_id": "0123456789abcdef",
}


def test_decode_intent_when_encoded_by_gate_then_round_trips() -> None:
    key = secrets.token_bytes(32)
    out = decode_intent(key, encode_intent(key, **INTENT))
    assert {k: out[k] for k in INTENT} == INTENT
    assert (out["order_type"], out["time_in_force"]) == ("market", "day")
    assert out["ts_intent"] >= INTENT["ts_recv"]


@pytest.mark.parametrize("offset", [0, 8, 32, 40, 48, 49, 60, 100])
def test_decode_intent_when_any_byte_altered_then_unapproved(offset: int) -> None:
    key = secrets.token_bytes(32)
    body, mac = encode_intent(key, **INTENT)
    forged = bytearray(body)
    forged[offset] ^= 0x01
    with pytest.raises(ValueError, match="unapproved"):
        decode_intent(key, [bytes(forged), mac])


def test_decode_intent_when_wrong_key_or_malformed_then_refused() -> None:
    key = secrets.token_bytes(32)
    frames = encode_intent(key, **INTENT)
    with pytest.raises(ValueError, match="unapproved"):
        decode_intent(secrets.token_bytes(32), frames)
    with pytest.raises(ValueError, match="malformed"):
        decode_intent(key, frames[:1])
    with pytest.raises(ValueError, match="malformed"):
        decode_intent(key, [frames[0][:-1], frames[1]])


def test_unpack_when_not_a_map_then_value_error() -> None:
    assert unpack(pack({"a": 1})) == {"a": 1}
    with pytest.raises(ValueError, match="malformed"):
        unpack(b"\xc1garbage")
    with pytest.raises(ValueError, match="not a map"):
        unpack(pack([1, 2]))  # type: ignore[arg-type]


def _write(tmp_path: Path, live: str, risk: str | None = None) -> tuple[Path, Path]:
    (tmp_path / "live.toml").write_text(live)
    (tmp_path / "risk.toml").write_text(risk or (REPO_ROOT / "config/risk.toml").read_text())
    return tmp_path / "live.toml", tmp_path / "risk.toml"


def test_load_config_when_shipped_files_then_valid() -> None:
    cfg = load_config()
    assert cfg.symbol == "SPY"
    assert cfg.risk.max_order_qty > 0


@pytest.mark.parametrize(
    ("live", "risk", "message"),
    [
        ('strategy="ema_rsi"\nstrategy_version="1"\nsymbol="SPY"\nspeeed=1\n', None, "speeed"),
        ('strategy="ema_rsi"\nstrategy_version="1"\nsymbol="spy"\n', None, "symbol"),
        (
            'strategy="ema_rsi"\nstrategy_version="1"\nsymbol="SPY"\n',
            "max_order_qty=-1\nmax_order_notional=1\nmax_position_qty=1\ndaily_loss_limit=1\n",
            "max_order_qty",
        ),
        ('strategy="ema_rsi"\nstrategy_version="1"\nsymbol="SPY"\n[sim]\nspeed=0\n', None, "speed"),
        ("strategy = [", None, "not valid TOML"),
    ],
)
def test_load_config_when_bad_value_then_error_names_key(
    tmp_path: Path, live: str, risk: str | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(*_write(tmp_path, live, risk))


def test_resolve_mode_when_live_without_confirmation_then_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    assert resolve_mode(load_config(mode="auto")) == "sim"
    with pytest.raises(ConfigurationError, match="needs APCA_API_KEY_ID"):
        resolve_mode(load_config(mode="paper"))
    monkeypatch.setenv("APCA_API_KEY_ID", "k")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s")
    assert resolve_mode(load_config(mode="auto")) == "paper"
    with pytest.raises(ConfigurationError, match="real money"):
        resolve_mode(load_config(mode="live"), allow_live=True)
    monkeypatch.setenv("TRADER_CONFIRM_LIVE", "I-UNDERSTAND")
    with pytest.raises(ConfigurationError, match="real money"):
        resolve_mode(load_config(mode="live"), allow_live=False)
    assert resolve_mode(load_config(mode="live"), allow_live=True) == "live"


BAR = {
    "T": "b",
    "S": "SPY",
    "o": 127.0,
    "h": 127.2,
    "l": 126.9,
    "c": 127.1,
    "v": 1000,
    "t": "2011-01-03T14:30:00Z",
}


def test_bar_record_when_valid_then_fields_and_ns_timestamp() -> None:
    rec = bar_record(BAR, ts_recv=42)
    assert rec["ts_event"][0] == np.datetime64("2011-01-03T14:30:00", "ns").astype(np.int64)
    assert (rec["ts_recv"][0], rec["close"][0]) == (42, 127.1)
    assert parse_rfc3339_ns("2021-02-22T15:51:45.335689322Z") % 1_000_000_000 == 335689322


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"c": float("nan")}, "non-finite"),
        ({"o": -1.0}, "non-positive"),
        ({"h": 126.0}, "inconsistent"),
        ({"v": -5}, "volume"),
        ({"t": "2011-01-03T09:30:00-05:00"}, "not UTC"),
        ({"c": None}, "bad field"),
    ],
)
def test_bar_record_when_malformed_then_value_error(edit: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bar_record({**BAR, **edit}, ts_recv=0)
    with pytest.raises(ValueError, match="missing"):
        bar_record({k: v for k, v in BAR.items() if k != "o"}, ts_recv=0)
