-- A rating may come with a few words from the customer, shown on the dashboard.
ALTER TABLE feedback ADD COLUMN comment text CHECK (length(comment) <= 1000);
CREATE INDEX feedback_comments ON feedback (at DESC) WHERE comment IS NOT NULL;
