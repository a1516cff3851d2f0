-- The allocation core's durable side: which database this is (so a Redis holding another
-- database's data is recognised), the operation behind each ledger row, backordered
-- quantities as ledger deltas, and each waiting order's place in the queue.

CREATE TABLE orderd_instance (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orderd_instance DEFAULT VALUES;

-- op_id: the operation (reserve, release:<x>, commit:<x>, a movement id) a row belongs to,
-- so recovery can restore what Redis needs to recognise a repeated call.
-- backordered_delta: units an order starts (+) or stops (-) waiting for. Like the other
-- deltas it only adds up, so rows written in any order imply the same state.
ALTER TABLE stock_ledger ADD COLUMN op_id text;
ALTER TABLE stock_ledger ADD COLUMN backordered_delta bigint NOT NULL DEFAULT 0;
ALTER TABLE stock_ledger DROP CONSTRAINT stock_ledger_kind_check;
ALTER TABLE stock_ledger ADD CONSTRAINT stock_ledger_kind_check CHECK (kind IN (
    'set', 'adjust', 'reserve', 'fill', 'release', 'commit'));
CREATE INDEX stock_ledger_recent_ops ON stock_ledger (warehouse, at) WHERE op_id IS NOT NULL;

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
