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
