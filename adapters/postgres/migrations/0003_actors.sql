-- Order actors: every message durable before it is streamed, numbered per order so that
-- turns apply in order exactly once, whichever process reads them.

CREATE TABLE order_seq (
    order_id  text PRIMARY KEY,
    last      integer NOT NULL CHECK (last > 0)
);

CREATE TABLE mailbox (
    id          bigserial PRIMARY KEY,
    order_id    text NOT NULL,
    seq         integer NOT NULL CHECK (seq > 0),
    type        text NOT NULL,
    body        bytea NOT NULL,                -- the message JSON, as put on the stream
    created_at  timestamptz NOT NULL DEFAULT now(),
    streamed    boolean NOT NULL DEFAULT false, -- XADD is known to have happened
    UNIQUE (order_id, seq)
);
CREATE INDEX mailbox_unstreamed ON mailbox (id) WHERE NOT streamed;
CREATE INDEX mailbox_paid ON mailbox (order_id) WHERE type = 'order_paid';

-- The last message applied to the order; a message at or below it is a repeat.
ALTER TABLE orders ADD COLUMN last_seq integer NOT NULL DEFAULT 0;
-- An order may be known before its platform data (cancelled before it was paid here).
ALTER TABLE orders ALTER COLUMN source DROP NOT NULL;
ALTER TABLE orders ALTER COLUMN external_id DROP NOT NULL;
ALTER TABLE orders ALTER COLUMN document DROP NOT NULL;

-- Deliveries are recognised by the platform's event or delivery id; keep the event id too.
ALTER TABLE webhook_inbox ADD COLUMN event_id text;
ALTER TABLE webhook_inbox ADD COLUMN reason text;
CREATE UNIQUE INDEX webhook_inbox_event ON webhook_inbox (source, event_id) WHERE event_id IS NOT NULL;

ALTER TABLE dead_letters ADD COLUMN seq integer;
