-- A customer message and a fulfillment request are claimed (pending to sending) and then
-- settled (sent, failed, cancelled). Their queues' indexes named the status in their
-- condition, and a changed value of a column an index reads makes an update write a
-- new entry in every index of the table: both steps did. The indexes now read whether
-- the row is still open, which the claim leaves as it is: the claim becomes a heap-only
-- update (with room on the page), and only settling a row takes it out of its queue.
-- Adding the computed column rewrites each table once.
ALTER TABLE notifications
    ADD COLUMN open boolean GENERATED ALWAYS AS (status IN ('pending', 'sending')) STORED;
DROP INDEX notifications_due;
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE open;
ALTER TABLE notifications SET (fillfactor = 50);

ALTER TABLE fulfillment_requests
    ADD COLUMN open boolean GENERATED ALWAYS AS (status IN ('pending', 'sending')) STORED;
DROP INDEX fulfillment_requests_due;
CREATE INDEX fulfillment_requests_due ON fulfillment_requests (next_attempt_at) WHERE open;
