"""Orders, fills and positions projected from the audit trail, in the writer's
transaction: what is in ``orders``/``fills``/``positions`` is exactly what the stored
audit events say, and an event re-sent or replayed moves nothing twice.

The writer ``COPY``s the producers' batches into the temporary table ``audit_in``
(:data:`STAGING_COLUMNS`: one row per batch, its events as JSON, so the writer does no
per-event work in Python), then runs :data:`PROJECT_SQL`, one statement:

1. the events are expanded (``jsonb_array_elements``, one parse per batch, then ``->>``
   per field, the cheapest of the JSON paths measured by ``bench/audit.py``); those
   already stored are left out *before* the insert: one primary-key range scan per batch
   finds the ``source_seq`` of a re-sent batch, and a fill whose ``execution_id`` is
   stored (reported again by a reconciliation) is looked up in the partial unique index;
2. the rest is inserted into ``order_audit_trail`` with a plain ``INSERT`` (an
   ``ON CONFLICT`` arbiter check costs a speculative insertion per event, about as much
   as the insert itself); the primary key and the unique ``execution_id`` index still
   refuse a duplicate, so a race the filter cannot see (another writer committing the
   same events, one event twice in one write) fails the statement and the writer runs
   :data:`PROJECT_SQL_TOLERANT` (``ON CONFLICT DO NOTHING``) instead, batch by batch;
3. new ``fill``/``partial_fill`` events become ``fills`` rows (primary key
   ``execution_id``): a plain ``INSERT`` too, as every ``fills`` row comes from a stored
   audit fill of the same ``execution_id``, which step 1 has left out (with
   :data:`PROJECT_SQL_TOLERANT`, ``ON CONFLICT DO NOTHING``: only the fills inserted
   move anything);
4. each symbol's ``positions.qty`` moves by the signed quantity of the *new* fills;
5. ``orders`` rows (inserted before the POST by :mod:`live.orderstore`) take the
   broker order id, the added filled quantity and the most advanced status of the new
   events (``order_status_rank`` in ``sql/020``: a late ``accepted`` never undoes a
   ``filled``). Only order-lifecycle events reach steps 3-5 (intents, risk decisions,
   kills... are filtered out).

It returns the number of audit rows inserted.
"""

from __future__ import annotations

#: Columns of the staging table, in COPY order: one row per producer batch, its events
#: a JSON array of :data:`live.audit.WIRE_FIELDS` arrays (``source_seq`` of the i-th
#: event, counted from 1, is ``first_seq + i - 1``).
STAGING_COLUMNS = ("session_id", "source", "first_seq", "n_events", "events")
#: Postgres types of :data:`STAGING_COLUMNS` (binary COPY); ``events`` is cast to jsonb.
STAGING_TYPES = ("text", "text", "int8", "int8", "text")

#: Columns of ``order_audit_trail`` the writer fills (``id`` and ``recorded_at`` default).
AUDIT_COLUMNS = (
    "ts, session_id, source, source_seq, event_type, correlation_id, client_order_id, "
    "broker_order_id, execution_id, symbol, side, qty, price, order_type, time_in_force, "
    "status, reason, metadata"
)
_FILL_EVENTS = "'fill', 'partial_fill'"
_ORDER_EVENTS = (
    "'accepted', 'partial_fill', 'fill', 'canceled', 'expired', 'rejected', 'replaced', "
    "'reconciled'"
)


#: The first CTEs of :data:`PROJECT_SQL` (``WITH`` them): ``new``, the staged events
#: expanded into :data:`AUDIT_COLUMNS`, those already stored left out (step 1).
NEW_EVENTS_CTES = f"""
stored AS MATERIALIZED (
    SELECT a.session_id, a.source, a.source_seq
    FROM audit_in b CROSS JOIN LATERAL (
        SELECT session_id, source, source_seq FROM order_audit_trail
        WHERE session_id = b.session_id AND source = b.source
          AND source_seq BETWEEN b.first_seq AND b.first_seq + b.n_events - 1
        OFFSET 0) a
), new AS MATERIALIZED (
    SELECT timestamptz 'epoch' + ((r->>0)::bigint / 1000) * interval '1 microsecond' AS ts,
           session_id, source, source_seq, r->>1 AS event_type, r->>2 AS correlation_id,
           r->>3 AS client_order_id, r->>4 AS broker_order_id, r->>5 AS execution_id,
           r->>6 AS symbol, r->>7 AS side, (r->>8)::numeric AS qty,
           (r->>9)::numeric AS price, r->>10 AS order_type, r->>11 AS time_in_force,
           r->>12 AS status, r->>13 AS reason, NULLIF(r->14, 'null'::jsonb) AS metadata
    FROM (
        SELECT b.session_id, b.source, b.first_seq + e.i - 1 AS source_seq, e.r
        FROM audit_in b, jsonb_array_elements(b.events::jsonb) WITH ORDINALITY AS e(r, i)
    ) src
    WHERE NOT EXISTS (
            SELECT FROM stored s WHERE s.session_id = src.session_id
              AND s.source = src.source AND s.source_seq = src.source_seq)
      AND NOT (r->>1 IN ({_FILL_EVENTS}) AND EXISTS (
            SELECT FROM order_audit_trail a
            WHERE a.execution_id = src.r->>5 AND a.event_type IN ({_FILL_EVENTS})))
)
"""


def _project_sql(on_conflict: str) -> str:
    return f"""
WITH {NEW_EVENTS_CTES}, ins AS (
    INSERT INTO order_audit_trail ({AUDIT_COLUMNS})
    SELECT {AUDIT_COLUMNS} FROM new ORDER BY session_id, source, source_seq
    {on_conflict}
    RETURNING 1
), new_fills AS (
    INSERT INTO fills (execution_id, ts, session_id, client_order_id, broker_order_id,
                       symbol, side, qty, price, audit_source, audit_seq)
    SELECT execution_id, ts, session_id, client_order_id, broker_order_id, symbol, side,
           qty, price, source, source_seq
    FROM new WHERE event_type IN ({_FILL_EVENTS})
    {on_conflict}
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
    FROM new
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


#: The writer's statement: plain ``INSERT`` of the events not yet stored (the fast path).
PROJECT_SQL = _project_sql("")
#: The same with ``ON CONFLICT DO NOTHING``: run batch by batch when :data:`PROJECT_SQL`
#: hits a duplicate its filter could not see (a concurrent writer, an event twice in one
#: write), so such a batch is stored once instead of being refused.
PROJECT_SQL_TOLERANT = _project_sql("ON CONFLICT DO NOTHING")
