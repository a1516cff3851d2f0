-- The allocation core's durable side beyond the ledger: which database this is (so a
-- Redis holding another database's data is recognised) and each waiting order's place.

CREATE TABLE orderd_instance (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orderd_instance DEFAULT VALUES;

-- An order's place in the backorder queues of a warehouse: set when it first waits and
-- never moved, so a restart or a second wait keeps the position.
CREATE TABLE backorder_queue (
    warehouse    text NOT NULL,
    order_id     text NOT NULL,
    priority     smallint NOT NULL CHECK (priority BETWEEN 0 AND 9),
    enqueued_at  timestamptz NOT NULL,
    cancel_at    timestamptz,
    PRIMARY KEY (warehouse, order_id)
);
CREATE INDEX backorder_queue_cancel ON backorder_queue (cancel_at) WHERE cancel_at IS NOT NULL;
