-- A shipment once packed wrong counts against shipping accuracy however it ends: kept on
-- the shipment, so the report need not search every order's events for it.
ALTER TABLE shipments ADD COLUMN mispacked boolean NOT NULL DEFAULT false;
UPDATE shipments s SET mispacked = true
WHERE EXISTS (SELECT 1 FROM order_events e
              WHERE e.order_id = s.order_id AND e.type = 'pack_mismatch'
                AND e.data->>'shipment_id' = s.id);
