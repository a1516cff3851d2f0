-- The stock ledger takes a row per reservation, in batches written by COPY: each index is
-- a cost on every one of them. A movement is known by its key, unique already, so the
-- serial id beside it (a sequence draw, 8 bytes and an index entry per row) goes, and so
-- does the index by order, which nothing reads (recovery and reports read the ledger
-- whole or by time, which the BRIN index on `at` serves).
DROP INDEX stock_ledger_order;
ALTER TABLE stock_ledger DROP COLUMN id;
ALTER TABLE stock_ledger REPLICA IDENTITY USING INDEX stock_ledger_movement_key_key;
