-- Operator queries on a table of millions of rows (issue #16).
--
-- Metadata look-ups (`order_id = 1234`): every scalar key of a message's
-- `metadata` object, one row each, written by triggers whoever inserts the
-- message. Values longer than 200 characters, nested objects and arrays
-- are not indexed; metadata that is not a JSON object is left alone.
CREATE TABLE IF NOT EXISTS herald_message_metadata (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (name, value, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS herald_message_metadata_message ON herald_message_metadata (message_id);

CREATE TRIGGER IF NOT EXISTS herald_metadata_insert AFTER INSERT ON notification_messages
WHEN NEW.metadata IS NOT NULL AND CASE WHEN json_valid(NEW.metadata) THEN json_type(NEW.metadata) = 'object' ELSE 0 END
BEGIN
    INSERT OR IGNORE INTO herald_message_metadata (name, value, message_id)
    SELECT key, CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END, NEW.id
      FROM json_each(NEW.metadata)
     WHERE type IN ('text', 'integer', 'real', 'true', 'false')
       AND length(CAST(value AS TEXT)) <= 200 AND length(key) <= 200;
END;
CREATE TRIGGER IF NOT EXISTS herald_metadata_update AFTER UPDATE OF metadata ON notification_messages
WHEN OLD.metadata IS NOT NEW.metadata
BEGIN
    DELETE FROM herald_message_metadata WHERE message_id = OLD.id;
    INSERT OR IGNORE INTO herald_message_metadata (name, value, message_id)
    SELECT key, CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END, NEW.id
      FROM json_each(CASE WHEN json_valid(NEW.metadata) AND json_type(NEW.metadata) = 'object' THEN NEW.metadata ELSE '{}' END)
     WHERE type IN ('text', 'integer', 'real', 'true', 'false')
       AND length(CAST(value AS TEXT)) <= 200 AND length(key) <= 200;
END;
CREATE TRIGGER IF NOT EXISTS herald_metadata_delete AFTER DELETE ON notification_messages
WHEN OLD.metadata IS NOT NULL
BEGIN
    DELETE FROM herald_message_metadata WHERE message_id = OLD.id;
END;

-- Rows that were there before the triggers are indexed afterwards, in
-- small batches (`herald migrate` does it): every id up to `until_id`.
CREATE TABLE IF NOT EXISTS herald_backfills (
    name TEXT PRIMARY KEY,
    done_id INTEGER NOT NULL,
    until_id INTEGER NOT NULL
);
INSERT OR IGNORE INTO herald_backfills (name, done_id, until_id)
     SELECT 'metadata', 0, COALESCE(max(id), 0) FROM notification_messages;
