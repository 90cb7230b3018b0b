-- Audit event type of the engine's strategy warm-up (live/warmup.py): the bars the
-- strategy state was rebuilt from at start (status 'warm'), the bars missed between
-- that history and the first streamed bar (status 'caught_up'), or a degraded start
-- without history (status 'cold', with the reason).
INSERT INTO audit_event_types (event_type, description) VALUES
    ('strategy_warmup', 'strategy state rebuilt from the broker''s bar history before trading, or started cold');
