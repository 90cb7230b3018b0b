-- Durable state projected from the audit trail (orders, fills, positions), position
-- snapshots, the application role and the reconciliation event types.

-- One row per order sent to the broker. Execution inserts it, durably, *before* the POST
-- (live/orderstore.py), so a crash between the two is settled at restart by looking the
-- client_order_id up at the broker; the audit writer keeps status and fills current.
CREATE TABLE orders (
    client_order_id  text PRIMARY KEY,
    session_id       text NOT NULL,
    correlation_id   text,
    broker_order_id  text,
    symbol           text NOT NULL,
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty              numeric NOT NULL CHECK (qty > 0),
    order_type       text NOT NULL,
    time_in_force    text NOT NULL,
    status           text NOT NULL,
    filled_qty       numeric NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX orders_open_idx ON orders (status)
    WHERE status NOT IN ('filled', 'canceled', 'expired', 'rejected', 'replaced', 'not_sent');

-- One row per execution; a fill reported twice (stream and reconciliation) is stored once.
CREATE TABLE fills (
    execution_id     text PRIMARY KEY,
    ts               timestamptz NOT NULL,
    session_id       text NOT NULL,
    client_order_id  text,
    broker_order_id  text,
    symbol           text NOT NULL,
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty              numeric NOT NULL CHECK (qty > 0),
    price            numeric NOT NULL CHECK (price > 0),
    audit_source     text NOT NULL,
    audit_seq        bigint NOT NULL
);
CREATE INDEX fills_ts_idx ON fills (ts);

-- Net shares per symbol, the sum of the signed fills (FIFO lots and realized P&L are
-- rebuilt from `fills` by live.recovery, exactly, in Decimal).
CREATE TABLE positions (
    symbol      text PRIMARY KEY,
    qty         numeric NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The engine's book on a schedule (every 60 s by default), for the record and for charts.
CREATE TABLE position_snapshots (
    ts              timestamptz NOT NULL,
    session_id      text NOT NULL,
    symbol          text NOT NULL,
    qty             numeric NOT NULL,
    avg_price       numeric NOT NULL,
    last_price      numeric,
    realized_pnl    numeric NOT NULL,
    unrealized_pnl  numeric NOT NULL,
    PRIMARY KEY (session_id, ts, symbol)
);
CREATE INDEX position_snapshots_ts_idx ON position_snapshots USING brin (ts);

-- Years of events stay fast to query by time: a b-tree on (ts) next to the BRIN of 001
-- (BRIN for range scans over an append-ordered table, b-tree for "last N" and joins).
CREATE INDEX order_audit_trail_ts_btree_idx ON order_audit_trail (ts);

-- The application's role: it may append to the audit trail and read it, never rewrite it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trader_app') THEN
        CREATE ROLE trader_app LOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO trader_app;
GRANT SELECT, INSERT ON order_audit_trail TO trader_app;
REVOKE UPDATE, DELETE, TRUNCATE ON order_audit_trail FROM trader_app;
GRANT USAGE ON SEQUENCE order_audit_trail_id_seq TO trader_app;
GRANT SELECT ON audit_event_types, schema_migrations TO trader_app;
GRANT SELECT, INSERT, UPDATE ON sessions, risk_state, orders, fills, positions,
    position_snapshots TO trader_app;

INSERT INTO audit_event_types (event_type, description) VALUES
    ('reconciliation_break', 'local state and the broker disagree (orders, positions, fills)'),
    ('reconciled', 'a reconciliation with the broker finished (breaks resolved or accepted)');

-- Order statuses only move forward (a late 'accepted' never undoes a 'filled'): rank used
-- by the audit projection (live/projection.py).
CREATE FUNCTION order_status_rank(status text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN status IN ('filled', 'canceled', 'expired', 'rejected', 'replaced', 'not_sent')
            THEN 3
        WHEN status IN ('partially_filled', 'pending_cancel') THEN 2
        WHEN status IN ('new', 'accepted', 'pending_new', 'submitted') THEN 1
        ELSE 0
    END
$$;
