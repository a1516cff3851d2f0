-- The stock ledger summed per day and sku, for inventory turnover: a report sums a few
-- hundred rows a day instead of expanding every movement since the first. The ledger is
-- append-only, so a closed day's sums never change; `stock_days_done` says up to which
-- day (not included) they are kept. Days are UTC days.
CREATE TABLE stock_days (
    day      date NOT NULL,
    sku      text NOT NULL,
    on_hand  bigint NOT NULL,   -- the day's change of units on hand
    shipped  bigint NOT NULL,   -- units that left in shipments that day
    PRIMARY KEY (day, sku)
);
CREATE TABLE stock_days_done (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    upto      date NOT NULL
);
