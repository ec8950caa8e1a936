-- Claims and idle wake-ups read open rows in the order they fall due:
-- messages due now first (in id order), then retries, scheduled messages
-- and expired leases by their time. A claim reads only rows that are due,
-- so a million messages scheduled for next week cost nothing until then.
-- This replaces the id-ordered index of open rows (one index fewer to
-- update per send).
CREATE INDEX IF NOT EXISTS notification_messages_due
    ON notification_messages (({{due_key}}), id) WHERE status IN ('pending', 'processing');
DROP INDEX IF EXISTS notification_messages_open;
