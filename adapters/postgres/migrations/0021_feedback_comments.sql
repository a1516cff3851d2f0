-- What the dashboard reads: a rating may come with a few words from the customer.
ALTER TABLE feedback ADD COLUMN comment text CHECK (length(comment) <= 1000);
CREATE INDEX feedback_comments ON feedback (at DESC) WHERE comment IS NOT NULL;
-- The dashboard's open delays: the few parcels late and not delivered, among all shipments.
CREATE INDEX shipments_open_delays ON shipments (promised_by) WHERE delayed AND delivered_at IS NULL;
