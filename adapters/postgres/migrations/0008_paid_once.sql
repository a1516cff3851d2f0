-- An order's paid message is stored once, by a constraint: two processes taking the same
-- new order at the same moment cannot both accept it, the second delivery is a duplicate.
-- Repeats stored before this keep their rows (and numbers) under another type.
UPDATE mailbox m SET type = 'order_paid_again'
WHERE m.type = 'order_paid'
  AND EXISTS (SELECT 1 FROM mailbox f
              WHERE f.order_id = m.order_id AND f.type = 'order_paid' AND f.id < m.id);
DROP INDEX mailbox_paid;
CREATE UNIQUE INDEX mailbox_paid ON mailbox (order_id) WHERE type = 'order_paid';
