-- A limit change made through PUT /limits is audited by the risk gate as 'risk_limits'
-- (sql/010); the 'limit_change' type that 030 added is never written, so it goes.
DELETE FROM audit_event_types WHERE event_type = 'limit_change';
