-- The audit trail's time index is the BRIN of 001 (the table is appended in time order,
-- so a BRIN range scan finds years of events by time with a tiny index). The b-tree on
-- `ts` added by 020 cost every insert a second time index for no query that needs it
-- (the latest events are found by `id`), so it goes.
DROP INDEX order_audit_trail_ts_btree_idx;
