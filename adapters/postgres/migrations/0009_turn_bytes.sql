-- Fewer bytes written per order, in the tables and in the WAL.

-- Every turn changes an order's state, and an indexed column makes each of those updates
-- a new entry in every index of the table. Nothing looks orders up by state (the report
-- counts them all, the listing filters what it has joined), so the index goes and a
-- turn's update of the order can be a heap-only one.
DROP INDEX orders_state;

-- An order's row is rewritten by each turn, a fulfillment request by its claim and its
-- result, soon after they are written. With room left on their page the new version
-- stays there: PostgreSQL then logs only the bytes that changed (a request's status, not
-- its pick list), a heap-only update touches no index, and the versions left behind are
-- pruned in place. Only pages written from now on keep the room.
ALTER TABLE orders SET (fillfactor = 50);
ALTER TABLE fulfillment_requests SET (fillfactor = 50);

-- Shipments are found by carrier and tracking number, which the unique constraint
-- indexes already; the tracking number's own index only cost writes.
DROP INDEX shipments_tracking;

-- An event is known by its order and number, which are unique already; a serial id
-- beside them cost a sequence draw, 8 bytes and an index entry per event, and nothing
-- reads it. The (order_id, seq) key identifies the rows a cascade deletes to replicas.
ALTER TABLE order_events DROP COLUMN id;
ALTER TABLE order_events REPLICA IDENTITY USING INDEX order_events_order_id_seq_key;
