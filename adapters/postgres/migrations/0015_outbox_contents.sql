-- What a customer message and a pick list say is written once, in a row of its own. The
-- outbox rows are rewritten by each claim and each result: with their content in them,
-- every version of a row carried it again into the table and the WAL.
CREATE TABLE notification_payloads (
    id       bigint PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    payload  json NOT NULL      -- the message as the notifier renders it
);
INSERT INTO notification_payloads (id, payload)
SELECT id, payload::json FROM notifications;
ALTER TABLE notifications DROP COLUMN payload;

-- One body per shipment: its request and, when the order is cancelled, its cancellation.
CREATE TABLE fulfillment_bodies (
    shipment_id  text PRIMARY KEY,
    body         json NOT NULL  -- the fulfillment request as sent to the warehouse system
);
INSERT INTO fulfillment_bodies (shipment_id, body)
SELECT DISTINCT ON (shipment_id) shipment_id, body::json
FROM fulfillment_requests ORDER BY shipment_id, kind DESC;  -- the request's ('request' > 'cancel')
ALTER TABLE fulfillment_requests DROP COLUMN body;
