-- Audit event types of the control API (live/control.py): a halt stops new orders
-- without cancelling the open ones; a limit change records the old and new risk limits.
INSERT INTO audit_event_types (event_type, description) VALUES
    ('halt', 'new orders halted by the operator, open orders left working'),
    ('limit_change', 'risk limits changed through the control API');
