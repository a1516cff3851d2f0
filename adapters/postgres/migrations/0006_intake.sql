-- Intake writes every webhook body; reading them back is rare (an operator's audit).
-- lz4 compresses a platform's JSON several times faster than the default pglz, where the
-- server has it; elsewhere the default stays.
DO $$
BEGIN
    ALTER TABLE webhook_inbox ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END
$$;

-- Every stored delivery is 'streamed' or 'ignored' at once and nothing reads the inbox by
-- its status: the index only cost a write per webhook.
DROP INDEX webhook_inbox_pending;

-- Whether messages reached the Redis stream is noted per batch of messages, not per
-- message: a flag per message cost a second write of every message row.
DROP INDEX mailbox_unstreamed;
CREATE TABLE unstreamed (
    id          bigserial PRIMARY KEY,
    message_ids bigint[] NOT NULL,          -- mailbox ids, stored together
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO unstreamed (message_ids)
SELECT array_agg(id ORDER BY id)
FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / 500 AS chunk
      FROM mailbox WHERE NOT streamed) AS waiting
GROUP BY chunk;
ALTER TABLE mailbox DROP COLUMN streamed;
