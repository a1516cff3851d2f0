-- The platform outbox: what the stores' platforms are told of their orders (a parcel
-- fulfilled), stored by the turn that decided it and delivered apart from the turns.
CREATE TABLE platform_calls (
    -- '<platform>:<kind>:<shipment>': a parcel is told of once, however often its turn runs.
    key              text PRIMARY KEY,
    order_id         text NOT NULL,
    platform         text NOT NULL,
    kind             text NOT NULL,
    body             json NOT NULL,     -- the call as the platform's adapter takes it
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    -- While 'sending': until when the process delivering it has it (real time).
    lease_until      timestamptz,
    last_error       text,
    result           text,              -- the platform's id of what it recorded
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX platform_calls_due ON platform_calls (next_attempt_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX platform_calls_order ON platform_calls (order_id);
