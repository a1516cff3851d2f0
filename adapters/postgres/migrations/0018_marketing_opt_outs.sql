-- Customers who unsubscribed from marketing messages (repeat-purchase reminders) by the
-- link in one: no such message goes to the address again, whatever the platform says.
CREATE TABLE marketing_opt_outs (
    address   text PRIMARY KEY,         -- the email address, lower case
    order_id  text NOT NULL,            -- the order whose message carried the link
    at        timestamptz NOT NULL
);
