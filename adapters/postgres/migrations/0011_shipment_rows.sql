-- A shipment's row is rewritten by the turns that pick, pack and ship it. With room left
-- on its page, a rewrite that changes no indexed column (a pick, a pack, a scan) stays a
-- heap-only update: it adds no entry to the table's four indexes, and the versions left
-- behind are pruned in place. Only pages written from now on keep the room.
ALTER TABLE shipments SET (fillfactor = 50);
