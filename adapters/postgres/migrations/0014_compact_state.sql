-- The actor's state and the platform document are kept as the text orderd wrote (json),
-- not parsed into jsonb: they are read back whole by orderd, and jsonb's binary form of
-- the state was larger than its text. A turn rewrites the state, so every byte it saves
-- is saved again in the WAL by each of the order's turns.
ALTER TABLE orders ALTER COLUMN actor_state TYPE json USING actor_state::json;
ALTER TABLE order_documents ALTER COLUMN document TYPE json USING document::json;
DO $$
BEGIN
    ALTER TABLE orders ALTER COLUMN actor_state SET COMPRESSION lz4;
    ALTER TABLE order_documents ALTER COLUMN document SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;  -- a server without lz4 keeps its default
END
$$;
