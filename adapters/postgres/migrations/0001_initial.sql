-- orderd's system of record: products, orders and their event log, shipments, the stock
-- ledger, the notification outbox, feedback, the webhook inbox, reminders and dead letters.
-- Names are unqualified: the runner sets search_path to the configured schema.

CREATE TABLE products (
    sku          text PRIMARY KEY,
    name         text NOT NULL,
    weight_g     integer NOT NULL CHECK (weight_g > 0),
    bin          text NOT NULL,
    unit_cost    numeric(14, 4) NOT NULL CHECK (unit_cost >= 0),
    length_cm    numeric(8, 2) CHECK (length_cm > 0),
    width_cm     numeric(8, 2) CHECK (width_cm > 0),
    height_cm    numeric(8, 2) CHECK (height_cm > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((length_cm IS NULL) = (width_cm IS NULL) AND (width_cm IS NULL) = (height_cm IS NULL))
);

-- Webhook deliveries exactly as received, stored before the platform gets its 202.
CREATE TABLE webhook_inbox (
    id            bigserial PRIMARY KEY,
    source        text NOT NULL,             -- shopify, woocommerce, generic, easypost, shippo, wms
    topic         text NOT NULL,
    delivery_id   text,                      -- the platform's delivery / event id
    external_id   text,                      -- the platform's order id, when the body has one
    received_at   timestamptz NOT NULL DEFAULT now(),
    body          bytea NOT NULL,
    status        text NOT NULL DEFAULT 'stored'
                  CHECK (status IN ('stored', 'streamed', 'processed', 'ignored', 'failed')),
    order_id      text,
    stream_id     text,                      -- the Redis stream entry it became
    UNIQUE (source, delivery_id)
);
CREATE INDEX webhook_inbox_pending ON webhook_inbox (id) WHERE status IN ('stored', 'streamed');
CREATE INDEX webhook_inbox_received ON webhook_inbox (received_at);

CREATE TABLE orders (
    id                text PRIMARY KEY,
    source            text NOT NULL,
    external_id       text NOT NULL,
    name              text,                  -- the platform's human name, e.g. #1001
    state             text NOT NULL DEFAULT 'received' CHECK (state IN (
                          'received', 'reserved', 'partially_reserved', 'backordered',
                          'fulfillment_requested', 'picked', 'packed', 'label_created',
                          'shipped', 'in_transit', 'out_for_delivery', 'delivered',
                          'completed', 'needs_attention', 'cancelled', 'ignored')),
    state_reason      text,
    version           integer NOT NULL DEFAULT 0,   -- optimistic concurrency for actor turns
    warehouse         text,
    backorder_policy  text,
    paid_at           timestamptz,
    currency          char(3),
    service_level     text,
    document          jsonb NOT NULL,        -- the normalized order as parsed from the platform
    actor_state       jsonb,                 -- the order actor's state at the end of its last turn
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    shipped_at        timestamptz,
    delivered_at      timestamptz,
    completed_at      timestamptz,
    UNIQUE (source, external_id)
);
CREATE INDEX orders_name ON orders (name);
CREATE INDEX orders_state ON orders (state);
CREATE INDEX orders_paid_at ON orders (paid_at);

CREATE TABLE order_lines (
    order_id           text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no            integer NOT NULL CHECK (line_no > 0),
    external_line_id   text,
    sku                text NOT NULL,
    name               text,
    quantity           integer NOT NULL CHECK (quantity > 0),
    requires_shipping  boolean NOT NULL DEFAULT true,
    grams              integer CHECK (grams >= 0),
    unit_price         numeric(14, 4),
    reserved           integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    shipped            integer NOT NULL DEFAULT 0 CHECK (shipped >= 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_lines_sku ON order_lines (sku);

-- Append-only: one row per event an order actor decided, in order.
CREATE TABLE order_events (
    id        bigserial PRIMARY KEY,
    order_id  text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seq       integer NOT NULL CHECK (seq > 0),
    type      text NOT NULL,
    at        timestamptz NOT NULL,
    data      jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (order_id, seq)
);

CREATE FUNCTION order_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'order_events is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
    FOR EACH ROW EXECUTE FUNCTION order_events_append_only();
CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events
    FOR EACH ROW WHEN (pg_trigger_depth() = 0)
    EXECUTE FUNCTION order_events_append_only();

CREATE TABLE shipments (
    id                  text PRIMARY KEY,
    order_id            text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seq                 integer NOT NULL CHECK (seq > 0),   -- 1 for the first shipment of an order
    warehouse           text NOT NULL,
    status              text NOT NULL DEFAULT 'pending',
    carrier             text,
    service             text,
    rate_amount         numeric(14, 4),
    rate_currency       char(3),
    label_idempotency   text UNIQUE,
    label_id            text,                              -- the carrier's id for the purchase
    tracking_number     text,
    label_format        text CHECK (label_format IN ('pdf', 'zpl')),
    label_path          text,
    weight_g            integer,
    promised_by         date,
    estimated_delivery  date,
    delayed             boolean NOT NULL DEFAULT false,
    tracking_status     text,
    packed_ok           boolean,                           -- scanned contents matched the order
    reported_wrong      boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    shipped_at          timestamptz,
    delivered_at        timestamptz,
    UNIQUE (order_id, seq),
    UNIQUE (carrier, tracking_number)
);

CREATE TABLE shipment_lines (
    shipment_id  text NOT NULL REFERENCES shipments (id) ON DELETE CASCADE,
    line_no      integer NOT NULL,
    sku          text NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (shipment_id, line_no)
);

-- Every stock movement, with the key that makes it happen at most once. One row per
-- operation (a reservation of an order's lines, a shipment's commit, a receipt), its lines
-- as [[sku, on_hand_delta, reserved_delta, backordered_delta], ...]. Rows only add deltas
-- up, so rows written in any order imply the same stock.
CREATE TABLE stock_ledger (
    id              bigserial PRIMARY KEY,
    movement_key    text NOT NULL UNIQUE,
    warehouse       text NOT NULL,
    kind            text NOT NULL CHECK (kind IN (
                        'set', 'adjust', 'reserve', 'fill', 'release', 'commit')),
    order_id        text,
    op_id           text NOT NULL,
    reason          text,
    at              timestamptz NOT NULL DEFAULT now(),
    lines           jsonb NOT NULL CHECK (jsonb_typeof(lines) = 'array')
);
CREATE INDEX stock_ledger_order ON stock_ledger (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX stock_ledger_at ON stock_ledger USING brin (at);

-- Outbox: one row per message that must go out, unique per (order, kind, shipment, episode).
CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    order_id         text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    shipment_id      text REFERENCES shipments (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    channel          text NOT NULL CHECK (channel IN ('email', 'sms')),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    message_id       text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';

CREATE TABLE feedback (
    id          bigserial PRIMARY KEY,
    order_id    text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    score       smallint NOT NULL CHECK (score BETWEEN 1 AND 5),
    token_id    text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_order ON feedback (order_id, at);

-- Durable timers; Redis keeps a copy in a sorted set for the hot path.
CREATE TABLE reminders (
    key         text PRIMARY KEY,            -- (order, kind, scope): scheduling twice is a no-op
    order_id    text NOT NULL,
    kind        text NOT NULL,
    due_at      timestamptz NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    fired_at    timestamptz
);
CREATE INDEX reminders_due ON reminders (due_at) WHERE fired_at IS NULL;

CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    stream       text NOT NULL,
    entry_id     text NOT NULL,
    order_id     text,
    deliveries   integer NOT NULL,
    error        text NOT NULL,
    payload      bytea NOT NULL,
    dead_at      timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz,
    UNIQUE (stream, entry_id)
);
