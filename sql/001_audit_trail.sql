-- Sessions, the append-only order audit trail and the persisted risk state.

CREATE TABLE sessions (
    session_id        text PRIMARY KEY,
    started_at        timestamptz NOT NULL DEFAULT now(),
    ended_at          timestamptz,
    mode              text NOT NULL CHECK (mode IN ('sim', 'paper', 'live')),
    strategy          text NOT NULL,
    strategy_version  text NOT NULL,
    summary           jsonb
);

-- One row per order event. `ts` is when the event happened (microseconds, UTC);
-- `recorded_at` when Postgres stored it. (session_id, source, source_seq) makes
-- replays idempotent: a re-sent event is ignored, never written twice.
CREATE TABLE order_audit_trail (
    id               bigserial PRIMARY KEY,
    ts               timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    session_id       text NOT NULL,
    source           text NOT NULL,
    source_seq       bigint NOT NULL,
    event_type       text NOT NULL CHECK (event_type IN (
                         'intent', 'risk_approved', 'risk_denied', 'submitted', 'accepted',
                         'partial_fill', 'fill', 'cancel_request', 'canceled', 'expired',
                         'rejected', 'replaced', 'kill', 'resume')),
    correlation_id   text,
    client_order_id  text,
    broker_order_id  text,
    execution_id     text,
    symbol           text,
    side             text CHECK (side IN ('buy', 'sell')),
    qty              numeric,
    price            numeric,
    order_type       text,
    time_in_force    text,
    status           text,
    reason           text,
    metadata         jsonb,
    UNIQUE (session_id, source, source_seq)
);
CREATE INDEX order_audit_trail_ts_idx ON order_audit_trail USING brin (ts);
CREATE INDEX order_audit_trail_client_order_id_idx ON order_audit_trail (client_order_id);
CREATE UNIQUE INDEX order_audit_trail_execution_id_idx
    ON order_audit_trail (execution_id) WHERE event_type IN ('fill', 'partial_fill');

-- Append-only for everyone, superusers included: UPDATE, DELETE and TRUNCATE raise.
CREATE FUNCTION order_audit_trail_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'order_audit_trail is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER order_audit_trail_no_update_delete
    BEFORE UPDATE OR DELETE ON order_audit_trail
    FOR EACH ROW EXECUTE FUNCTION order_audit_trail_append_only();
CREATE TRIGGER order_audit_trail_no_truncate
    BEFORE TRUNCATE ON order_audit_trail
    FOR EACH STATEMENT EXECUTE FUNCTION order_audit_trail_append_only();

-- Risk state that must survive a restart (the kill switch first of all).
CREATE TABLE risk_state (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
