"""Orders, fills and positions projected from the audit trail, in the writer's
transaction: what is in ``orders``/``fills``/``positions`` is exactly what the stored
audit events say, and an event re-sent or replayed moves nothing twice.

The writer ``COPY``s the producers' batches into the temporary table ``audit_in``
(:data:`STAGING_COLUMNS`: one row per batch, its events as JSON, so the writer does no
per-event work in Python), then runs :data:`PROJECT_SQL`, one statement:

1. the events are expanded (``jsonb_array_elements``) and inserted into
   ``order_audit_trail``; those already there (same ``session_id, source,
   source_seq``, or a fill whose ``execution_id`` is stored) are skipped (``ON CONFLICT
   DO NOTHING``), and only the new ones flow on;
2. new ``fill``/``partial_fill`` events become ``fills`` rows (unique ``execution_id``);
3. each symbol's ``positions.qty`` moves by the signed quantity of the *new* fills;
4. ``orders`` rows (inserted before the POST by :mod:`live.orderstore`) take the
   broker order id, the added filled quantity and the most advanced status of the new
   events (``order_status_rank`` in ``sql/020``: a late ``accepted`` never undoes a
   ``filled``).

It returns the number of audit rows inserted.
"""

from __future__ import annotations

#: Columns of the staging table, in COPY order: one row per producer batch, its events
#: a JSON array of :data:`live.audit.WIRE_FIELDS` arrays (``source_seq`` of the i-th
#: event, counted from 1, is ``first_seq + i - 1``).
STAGING_COLUMNS = ("session_id", "source", "first_seq", "n_events", "events")
#: Postgres types of :data:`STAGING_COLUMNS` (binary COPY); ``events`` is cast to jsonb.
STAGING_TYPES = ("text", "text", "int8", "int8", "text")

_AUDIT_COLUMNS = (
    "ts, session_id, source, source_seq, event_type, correlation_id, client_order_id, "
    "broker_order_id, execution_id, symbol, side, qty, price, order_type, time_in_force, "
    "status, reason, metadata"
)
_ORDER_EVENTS = (
    "'accepted', 'partial_fill', 'fill', 'canceled', 'expired', 'rejected', 'replaced', "
    "'reconciled'"
)

PROJECT_SQL = f"""
WITH src AS (
    SELECT b.session_id, b.source, b.first_seq + e.i - 1 AS source_seq, e.r
    FROM audit_in b, jsonb_array_elements(b.events::jsonb) WITH ORDINALITY AS e(r, i)
), ins AS (
    INSERT INTO order_audit_trail ({_AUDIT_COLUMNS})
    SELECT timestamptz 'epoch' + ((r->>0)::bigint / 1000) * interval '1 microsecond',
           session_id, source, source_seq, r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, r->>7,
           (r->>8)::numeric, (r->>9)::numeric, r->>10, r->>11, r->>12, r->>13,
           NULLIF(r->14, 'null'::jsonb)
    FROM src ORDER BY session_id, source, source_seq
    ON CONFLICT DO NOTHING
    RETURNING ts, session_id, source, source_seq, event_type, client_order_id,
              broker_order_id, execution_id, symbol, side, qty, price, status
), new_fills AS (
    INSERT INTO fills (execution_id, ts, session_id, client_order_id, broker_order_id,
                       symbol, side, qty, price, audit_source, audit_seq)
    SELECT execution_id, ts, session_id, client_order_id, broker_order_id, symbol, side,
           qty, price, source, source_seq
    FROM ins WHERE event_type IN ('fill', 'partial_fill')
    ON CONFLICT (execution_id) DO NOTHING
    RETURNING client_order_id, symbol, side, qty
), pos AS (
    INSERT INTO positions (symbol, qty)
    SELECT symbol, sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END)
    FROM new_fills GROUP BY symbol
    ON CONFLICT (symbol) DO UPDATE
        SET qty = positions.qty + EXCLUDED.qty, updated_at = clock_timestamp()
), best AS (
    SELECT DISTINCT ON (client_order_id) client_order_id, status,
           max(broker_order_id) OVER (PARTITION BY client_order_id) AS broker_order_id
    FROM ins
    WHERE client_order_id IS NOT NULL AND status IS NOT NULL
      AND event_type IN ({_ORDER_EVENTS})
    ORDER BY client_order_id, order_status_rank(status) DESC, ts DESC, source_seq DESC
), filled AS (
    SELECT client_order_id, sum(qty) AS qty FROM new_fills
    WHERE client_order_id IS NOT NULL GROUP BY client_order_id
), upd AS (
    UPDATE orders o SET
        status = CASE WHEN b.status IS NOT NULL
                       AND order_status_rank(b.status) >= order_status_rank(o.status)
                      THEN b.status ELSE o.status END,
        broker_order_id = COALESCE(o.broker_order_id, b.broker_order_id),
        filled_qty = o.filled_qty + COALESCE(f.qty, 0),
        updated_at = clock_timestamp()
    FROM best b FULL JOIN filled f USING (client_order_id)
    WHERE o.client_order_id = COALESCE(b.client_order_id, f.client_order_id)
)
SELECT count(*) FROM ins
"""
