-- The report counts shipments and ratings by when their order was paid. Each carries a
-- copy of its order's paid_at, so that their figures read neither the orders table (the
-- widest, one row per order with its actor state) nor a join with it, and shipments are
-- found by it. The column is set when the row is written and never changes: paid_at
-- is an order's from its reception, before it has any shipment or rating. Indexing it
-- costs shipments' updates nothing (a pick, a pack or a scan leaves it as it is).
ALTER TABLE shipments ADD COLUMN paid_at timestamptz;
ALTER TABLE feedback ADD COLUMN paid_at timestamptz;
UPDATE shipments s SET paid_at = o.paid_at FROM orders o
WHERE o.id = s.order_id AND o.paid_at IS NOT NULL;
UPDATE feedback f SET paid_at = o.paid_at FROM orders o
WHERE o.id = f.order_id AND o.paid_at IS NOT NULL;
CREATE INDEX shipments_paid_at ON shipments (paid_at);

-- Copied by the database, whoever writes the row, so no writer can leave it out.
CREATE FUNCTION copy_order_paid_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.paid_at := (SELECT o.paid_at FROM orders o WHERE o.id = NEW.order_id);
    RETURN NEW;
END;
$$;
CREATE TRIGGER shipments_paid_at BEFORE INSERT ON shipments
    FOR EACH ROW EXECUTE FUNCTION copy_order_paid_at();
CREATE TRIGGER feedback_paid_at BEFORE INSERT ON feedback
    FOR EACH ROW EXECUTE FUNCTION copy_order_paid_at();

-- An order's paid_at set again (by hand) moves its copies with it. A turn's update names
-- paid_at but leaves it as it was: the condition is false and nothing runs.
CREATE FUNCTION move_order_paid_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE shipments SET paid_at = NEW.paid_at WHERE order_id = NEW.id;
    UPDATE feedback SET paid_at = NEW.paid_at WHERE order_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER orders_paid_at_moved AFTER UPDATE OF paid_at ON orders
    FOR EACH ROW WHEN (OLD.paid_at IS DISTINCT FROM NEW.paid_at)
    EXECUTE FUNCTION move_order_paid_at();
