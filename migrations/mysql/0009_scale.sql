-- Operator queries on a table of millions of rows (issue #16).
--
-- Metadata look-ups (`order_id = 1234`): every scalar key of a message's
-- `metadata` object, one row each, written by triggers whoever inserts the
-- message. Values longer than 200 characters, nested objects and arrays
-- are not indexed; metadata that is not a JSON object is left alone.
CREATE TABLE IF NOT EXISTS herald_message_metadata (
    name VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
    value VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (name, value, message_id),
    KEY herald_message_metadata_message (message_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

DROP PROCEDURE IF EXISTS herald_index_metadata;
CREATE PROCEDURE herald_index_metadata(IN msg BIGINT, IN doc LONGTEXT)
BEGIN
    IF doc IS NOT NULL AND JSON_VALID(doc) AND JSON_TYPE(doc) = 'OBJECT' THEN
        INSERT IGNORE INTO herald_message_metadata (name, value, message_id)
        SELECT k.name, JSON_UNQUOTE(JSON_EXTRACT(doc, CONCAT('$.', JSON_QUOTE(k.name)))), msg
          FROM JSON_TABLE(JSON_KEYS(doc), '$[*]' COLUMNS (name VARCHAR(400) PATH '$')) AS k
         WHERE JSON_TYPE(JSON_EXTRACT(doc, CONCAT('$.', JSON_QUOTE(k.name))))
                   IN ('STRING', 'INTEGER', 'UNSIGNED INTEGER', 'DOUBLE', 'DECIMAL', 'BOOLEAN')
           AND CHAR_LENGTH(k.name) <= 200
           AND CHAR_LENGTH(JSON_UNQUOTE(JSON_EXTRACT(doc, CONCAT('$.', JSON_QUOTE(k.name))))) <= 200;
    END IF;
END;

DROP TRIGGER IF EXISTS herald_metadata_insert;
CREATE TRIGGER herald_metadata_insert AFTER INSERT ON notification_messages
FOR EACH ROW
BEGIN
    IF NEW.metadata IS NOT NULL THEN
        CALL herald_index_metadata(NEW.id, NEW.metadata);
    END IF;
END;
DROP TRIGGER IF EXISTS herald_metadata_update;
CREATE TRIGGER herald_metadata_update AFTER UPDATE ON notification_messages
FOR EACH ROW
BEGIN
    IF NOT (NEW.metadata <=> OLD.metadata) THEN
        DELETE FROM herald_message_metadata WHERE message_id = OLD.id;
        CALL herald_index_metadata(NEW.id, NEW.metadata);
    END IF;
END;
DROP TRIGGER IF EXISTS herald_metadata_delete;
CREATE TRIGGER herald_metadata_delete AFTER DELETE ON notification_messages
FOR EACH ROW
BEGIN
    IF OLD.metadata IS NOT NULL THEN
        DELETE FROM herald_message_metadata WHERE message_id = OLD.id;
    END IF;
END;

-- Rows that were there before the triggers are indexed afterwards, in
-- small batches (`herald migrate` does it): every id up to `until_id`.
CREATE TABLE IF NOT EXISTS herald_backfills (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    done_id BIGINT NOT NULL,
    until_id BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
INSERT IGNORE INTO herald_backfills (name, done_id, until_id)
     SELECT 'metadata', 0, COALESCE(max(id), 0) FROM notification_messages;
