-- An order's row is rewritten by every turn, and its document and actor state together
-- make it long enough to be compressed each time. lz4 does that several times faster
-- than the default pglz, where the server has it; elsewhere the default stays.
DO $$
BEGIN
    ALTER TABLE orders ALTER COLUMN document SET COMPRESSION lz4;
    ALTER TABLE orders ALTER COLUMN actor_state SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END
$$;
