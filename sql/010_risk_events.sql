-- Audit event types of the risk layer (issue 6).
INSERT INTO audit_event_types (event_type, description) VALUES
    ('risk_limits', 'risk limits changed at run time and put in force by the gate'),
    ('circuit_breaker', 'circuit breaker state transition (closed, open, half-open) with its reason'),
    ('stop_triggered', 'a stop (static, trailing, ATR or time) produced an exit intent'),
    ('flatten', 'kill switch flatten: every position closed at the broker');
