-- Operator queries on a table of millions of rows (issue #16).
--
-- Metadata look-ups (`order_id = 1234`): every scalar key of a message's
-- `metadata` object, one row each, written by triggers whoever inserts the
-- message (Herald or the POS's own INSERT). The drain never changes
-- `metadata`, so claims and outcomes cost nothing here. Values longer than
-- 200 characters, nested objects and arrays are not indexed; metadata that
-- is not valid JSON is left alone (the POS's INSERT still succeeds).
CREATE TABLE IF NOT EXISTS herald_message_metadata (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (name, value, message_id)
);
CREATE INDEX IF NOT EXISTS herald_message_metadata_message ON herald_message_metadata (message_id);

-- The scalar keys of one metadata text, as (name, value) pairs: none when
-- it is not a JSON object.
CREATE OR REPLACE FUNCTION herald_metadata_pairs(doc TEXT)
RETURNS TABLE (name TEXT, value TEXT) LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    j JSONB;
BEGIN
    IF doc IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        j := doc::jsonb;
    EXCEPTION WHEN others THEN
        RETURN;
    END;
    IF jsonb_typeof(j) <> 'object' THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT e.key, e.value #>> '{}'
          FROM jsonb_each(j) AS e
         WHERE jsonb_typeof(e.value) IN ('string', 'number', 'boolean')
           AND length(e.value #>> '{}') <= 200 AND length(e.key) <= 200;
END;
$$;

CREATE OR REPLACE FUNCTION herald_index_metadata() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM herald_message_metadata WHERE message_id = OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO herald_message_metadata (name, value, message_id)
             SELECT p.name, p.value, NEW.id FROM herald_metadata_pairs(NEW.metadata::text) AS p
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS herald_metadata_insert ON notification_messages;
CREATE TRIGGER herald_metadata_insert AFTER INSERT ON notification_messages
    FOR EACH ROW WHEN (NEW.metadata IS NOT NULL) EXECUTE FUNCTION herald_index_metadata();
DROP TRIGGER IF EXISTS herald_metadata_update ON notification_messages;
CREATE TRIGGER herald_metadata_update AFTER UPDATE OF metadata ON notification_messages
    FOR EACH ROW WHEN (OLD.metadata IS DISTINCT FROM NEW.metadata) EXECUTE FUNCTION herald_index_metadata();
DROP TRIGGER IF EXISTS herald_metadata_delete ON notification_messages;
CREATE TRIGGER herald_metadata_delete AFTER DELETE ON notification_messages
    FOR EACH ROW WHEN (OLD.metadata IS NOT NULL) EXECUTE FUNCTION herald_index_metadata();

-- Rows that were there before the triggers are indexed afterwards, in
-- small batches (`herald migrate` does it, and says how far it got):
-- every id up to `until_id`, from `done_id` on. Creating the triggers
-- waited for every insert in flight, so later rows have the trigger.
CREATE TABLE IF NOT EXISTS herald_backfills (
    name TEXT PRIMARY KEY,
    done_id BIGINT NOT NULL,
    until_id BIGINT NOT NULL
);
INSERT INTO herald_backfills (name, done_id, until_id)
     SELECT 'metadata', 0, COALESCE(max(id), 0) FROM notification_messages
ON CONFLICT (name) DO NOTHING;
