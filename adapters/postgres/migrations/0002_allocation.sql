-- The allocation core's durable side: which database this is (so a Redis holding another
-- database's data is recognised), the operation behind each ledger row, and backorders.

CREATE TABLE orderd_instance (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orderd_instance DEFAULT VALUES;

-- The operation (reserve, release:<x>, commit:<x>, a movement id) a ledger row belongs to,
-- so recovery can restore what Redis needs to recognise a repeated call.
ALTER TABLE stock_ledger ADD COLUMN op_id text;
CREATE INDEX stock_ledger_recent_ops ON stock_ledger (warehouse, at) WHERE op_id IS NOT NULL;

-- Orders waiting for stock, one row per (order, operation, sku). Rows are closed, never
-- deleted, so a repeated write of an old backorder cannot bring it back.
CREATE TABLE backorders (
    warehouse    text NOT NULL,
    order_id     text NOT NULL,
    op_id        text NOT NULL,
    sku          text NOT NULL REFERENCES products (sku),
    quantity     integer NOT NULL CHECK (quantity > 0),
    priority     smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    enqueued_at  timestamptz NOT NULL,
    cancel_at    timestamptz,
    closed_at    timestamptz,
    closed_by    text CHECK (closed_by IN ('filled', 'released')),
    PRIMARY KEY (warehouse, order_id, op_id, sku)
);
CREATE INDEX backorders_open ON backorders (warehouse, sku) WHERE closed_at IS NULL;
CREATE INDEX backorders_due_cancel ON backorders (cancel_at) WHERE closed_at IS NULL AND cancel_at IS NOT NULL;
