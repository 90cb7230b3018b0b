-- Audit event types live in a table, so that each later migration adds its own types
-- with one INSERT instead of rewriting a CHECK list.
CREATE TABLE audit_event_types (
    event_type   text PRIMARY KEY,
    description  text NOT NULL
);
INSERT INTO audit_event_types (event_type, description) VALUES
    ('intent', 'order intent produced by the strategy'),
    ('risk_approved', 'intent approved by the pre-trade risk gate'),
    ('risk_denied', 'intent denied by a named risk control'),
    ('submitted', 'order sent to the broker'),
    ('accepted', 'order acknowledged by the broker'),
    ('partial_fill', 'part of the order executed'),
    ('fill', 'order completely executed'),
    ('cancel_request', 'cancel sent to the broker'),
    ('canceled', 'order cancelled at the broker'),
    ('expired', 'order expired at the broker'),
    ('rejected', 'order rejected by the broker or by execution'),
    ('replaced', 'order replaced at the broker'),
    ('kill', 'kill switch engaged'),
    ('resume', 'kill switch released');
ALTER TABLE order_audit_trail DROP CONSTRAINT order_audit_trail_event_type_check;
ALTER TABLE order_audit_trail ADD CONSTRAINT order_audit_trail_event_type_fkey
    FOREIGN KEY (event_type) REFERENCES audit_event_types (event_type);
