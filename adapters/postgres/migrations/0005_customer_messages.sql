-- Customer messages and delivery monitoring: the outbox's message data, each shipment's
-- tracking and delay episodes, the sandbox carrier's parcel journeys, and the key that
-- signs rating links when none is configured.

-- A product's own follow-ups, in days after delivery (NULL: the store's setting).
ALTER TABLE products ADD COLUMN review_after_days integer CHECK (review_after_days > 0);
ALTER TABLE products ADD COLUMN repeat_after_days integer CHECK (repeat_after_days > 0);

ALTER TABLE notifications ADD COLUMN episode integer NOT NULL DEFAULT 0;
-- Personal data (an address or a phone number): shown to operators, never logged.
ALTER TABLE notifications ADD COLUMN recipient text NOT NULL DEFAULT '';
-- What the message says: its template values, items and links.
ALTER TABLE notifications ADD COLUMN payload jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX notifications_order ON notifications (order_id);
-- 'sending': claimed by a process until claimed_until; sent outside any transaction, so a
-- crash leaves the claim to run out and the message is sent again (same Message-ID).
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped'));
ALTER TABLE notifications ADD COLUMN claimed_until timestamptz;
DROP INDEX notifications_due;
CREATE INDEX notifications_due ON notifications (next_attempt_at)
    WHERE status IN ('pending', 'sending');

ALTER TABLE shipments ADD COLUMN tracking_detail text;
ALTER TABLE shipments ADD COLUMN tracking_at timestamptz;
ALTER TABLE shipments ADD COLUMN carrier_estimate date;
-- Delay episodes: the count so far; `delayed` says whether one is open now.
ALTER TABLE shipments ADD COLUMN delay_episode integer NOT NULL DEFAULT 0;
ALTER TABLE shipments ADD COLUMN delay_reason text;
CREATE INDEX shipments_tracking ON shipments (tracking_number);

ALTER TABLE sandbox_shipments ADD COLUMN fate text;
ALTER TABLE sandbox_shipments ADD COLUMN delivery_date date;
ALTER TABLE sandbox_shipments ADD COLUMN events_sent integer NOT NULL DEFAULT 0;
-- When the parcel's next scan not yet reported happens; NULL once all are reported.
ALTER TABLE sandbox_shipments ADD COLUMN next_scan_at timestamptz;
CREATE INDEX sandbox_shipments_next_scan ON sandbox_shipments (next_scan_at)
    WHERE next_scan_at IS NOT NULL;

ALTER TABLE orderd_instance ADD COLUMN feedback_key text NOT NULL
    DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
