-- The audit trail's write path, made cheaper per event without weakening a guarantee
-- (issue 7: >= 100,000 events/s through the writer; the per-event costs were measured
-- by bench/audit.py, "where the time goes").
--
-- 1. The event type is checked once per INSERT statement instead of once per row. The
--    FOREIGN KEY of 002 ran an RI trigger (an SPI query locking the type's row) for
--    every event, ~10 us/row, the largest single cost. The trigger below reads the
--    statement's distinct event types from its transition table, locks them FOR KEY
--    SHARE (as the FK did, so a concurrent DELETE of a type waits) and refuses the whole
--    statement if one is not in audit_event_types. audit_event_types keeps the FK's
--    other half: a type in use can be neither deleted nor renamed, and the table cannot
--    be truncated while the audit trail has rows.
ALTER TABLE order_audit_trail DROP CONSTRAINT order_audit_trail_event_type_fkey;

-- SECURITY DEFINER: FOR KEY SHARE needs UPDATE on audit_event_types, which trader_app
-- must not have (it only appends to the audit trail and reads the types).
CREATE FUNCTION order_audit_trail_check_event_types() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    used text[];
    found text[];
    unknown text;
BEGIN
    used := ARRAY(SELECT DISTINCT event_type FROM new_rows);
    found := ARRAY(SELECT event_type FROM audit_event_types WHERE event_type = ANY (used)
                   FOR KEY SHARE);
    SELECT string_agg(u, ', ' ORDER BY u) INTO unknown FROM unnest(used) u
    WHERE u <> ALL (found);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'order_audit_trail: event type % not in audit_event_types', unknown
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER order_audit_trail_event_types
    AFTER INSERT ON order_audit_trail REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION order_audit_trail_check_event_types();

-- One row per type, on the rare DELETE/UPDATE of a type (a migration): a sequential scan
-- that stops at the first audit row of that type.
CREATE FUNCTION audit_event_types_in_use() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF EXISTS (SELECT FROM order_audit_trail) THEN
            RAISE EXCEPTION 'audit_event_types is referenced by order_audit_trail: TRUNCATE refused'
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END IF;
    IF (TG_OP = 'DELETE' OR NEW.event_type IS DISTINCT FROM OLD.event_type)
       AND EXISTS (SELECT FROM order_audit_trail WHERE event_type = OLD.event_type) THEN
        RAISE EXCEPTION 'audit event type % is used by order_audit_trail: % refused',
            OLD.event_type, TG_OP USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER audit_event_types_in_use
    BEFORE DELETE OR UPDATE OF event_type ON audit_event_types
    FOR EACH ROW EXECUTE FUNCTION audit_event_types_in_use();
CREATE TRIGGER audit_event_types_no_truncate
    BEFORE TRUNCATE ON audit_event_types
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_types_in_use();

-- 2. The natural key (session_id, source, source_seq), which makes a re-sent event
--    impossible to store twice, becomes the primary key; the b-tree on the surrogate
--    `id` goes (no query looks an event up by id: "ORDER BY id" still gives the order
--    of storage, by a sort). One index fewer to maintain per event.
ALTER TABLE order_audit_trail DROP CONSTRAINT order_audit_trail_pkey;
ALTER TABLE order_audit_trail
    DROP CONSTRAINT order_audit_trail_session_id_source_source_seq_key;
ALTER TABLE order_audit_trail ADD PRIMARY KEY (session_id, source, source_seq);

-- 3. `id` numbers are handed to a session 1,000 at a time instead of one shared-buffer
--    round trip per event. They still increase in storage order within a writer's
--    connection (there is one writer); a reconnect leaves a gap, as a rollback always did.
ALTER SEQUENCE order_audit_trail_id_seq CACHE 1000;
