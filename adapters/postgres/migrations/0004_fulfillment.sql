-- Fulfillment and shipping: what a shipment holds and how it left, the requests sent to
-- the warehouse system, and the built-in sandbox carrier's own account of its labels.

-- Handling notes for packers and carriers (fragile, keep_upright, hazmat, ...).
ALTER TABLE products ADD COLUMN flags text[] NOT NULL DEFAULT '{}';

ALTER TABLE shipments ADD COLUMN carrier_account text;
ALTER TABLE shipments ADD COLUMN service_level text;
ALTER TABLE shipments ADD COLUMN quote_id text;
ALTER TABLE shipments ADD COLUMN rate_id text;
ALTER TABLE shipments ADD COLUMN tracking_url text;
ALTER TABLE shipments ADD COLUMN length_cm numeric(8, 2);
ALTER TABLE shipments ADD COLUMN width_cm numeric(8, 2);
ALTER TABLE shipments ADD COLUMN height_cm numeric(8, 2);
-- Why the shipment stopped (short pick, contents differ), for the person who looks.
ALTER TABLE shipments ADD COLUMN problem text;
ALTER TABLE shipments ADD CONSTRAINT shipments_status CHECK (status IN (
    'requested', 'picked', 'packed', 'mismatch', 'label_created', 'shipped', 'short_picked',
    'voided', 'cancelled', 'in_transit', 'out_for_delivery', 'delivered', 'returned', 'failure'));
ALTER TABLE shipments ALTER COLUMN status SET DEFAULT 'requested';

-- The fulfillment request of each shipment (and its cancellation), delivered to the
-- warehouse system by the daemon's dispatcher with retries: an order never waits on a
-- slow or absent WMS.
CREATE TABLE fulfillment_requests (
    shipment_id      text NOT NULL,
    -- 'request': pick and pack the shipment; 'cancel': the order was cancelled after the
    -- request went out, so the warehouse system is told to stop.
    kind             text NOT NULL DEFAULT 'request' CHECK (kind IN ('request', 'cancel')),
    order_id         text NOT NULL,
    warehouse        text NOT NULL,
    adapter          text NOT NULL,
    body             jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    -- While 'sending': until when the process delivering it has it; after that, another
    -- process may deliver it again (same idempotency key).
    lease_until      timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    PRIMARY KEY (shipment_id, kind)
);
CREATE INDEX fulfillment_requests_due ON fulfillment_requests (next_attempt_at)
    WHERE status IN ('pending', 'sending');

-- The sandbox carrier's side, as a real carrier keeps it: each quoted shipment, and its
-- label once bought (one per shipment, however often buying is asked for).
CREATE TABLE sandbox_shipments (
    quote_id         text PRIMARY KEY,
    request          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    idempotency_key  text,
    tracking_number  text UNIQUE,
    service          text,
    amount           numeric(14, 4),
    currency         char(3),
    transit_days     integer,
    label_format     text,
    bought_at        timestamptz,
    voided_at        timestamptz
);
