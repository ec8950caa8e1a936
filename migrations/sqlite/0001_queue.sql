-- Timestamps are TEXT in one fixed-width UTC form ('2026-11-25T02:03:04.123Z'),
-- so they sort and compare as text. `send_at` may be written by other
-- programs in other forms; Herald compares it through julianday().
CREATE TABLE IF NOT EXISTS notification_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {{channel}} TEXT NOT NULL,
    {{recipient}} TEXT NOT NULL,
    {{subject}} TEXT,
    {{body}} TEXT,
    {{html_body}} TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'sent', 'failed', 'cancelled'{{extra_statuses}})),
    attempts INTEGER NOT NULL DEFAULT 0,
    {{error}} TEXT,
    provider TEXT,
    provider_message_id TEXT,
    send_at TEXT,
    {{sent_at}} TEXT,
    {{created_at}} TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    {{updated_at}} TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    metadata TEXT,
    -- Herald's bookkeeping: when a retry is due, who holds the lease and
    -- until when, and how many attempts came before the current round
    -- (a manual retry starts a new round of MAX_RETRIES).
    next_attempt_at TEXT,
    lease_owner TEXT,
    lease_expires_at TEXT,
    retry_base INTEGER NOT NULL DEFAULT 0
);

-- Claiming only ever looks at unfinished rows: this index stays small
-- however many millions of sent rows the table holds.
CREATE INDEX IF NOT EXISTS notification_messages_open
    ON notification_messages (id) WHERE status IN ('pending', 'processing');
CREATE INDEX IF NOT EXISTS notification_messages_created_at ON notification_messages ({{created_at}});
CREATE INDEX IF NOT EXISTS notification_messages_failed
    ON notification_messages (id) WHERE status = 'failed';

CREATE TABLE IF NOT EXISTS notification_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES notification_messages (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    provider TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    provider_message_id TEXT,
    worker TEXT
);
CREATE INDEX IF NOT EXISTS notification_attempts_message ON notification_attempts (message_id, attempt);

-- The guide's manual retry, `UPDATE ... SET status = 'pending'` on a failed
-- (or cancelled) row: start a fresh round of retries, clear the schedule
-- and the lease.
CREATE TRIGGER IF NOT EXISTS herald_requeue AFTER UPDATE OF status ON notification_messages
    FOR EACH ROW WHEN OLD.status IN ('failed', 'cancelled') AND NEW.status = 'pending'
BEGIN
    UPDATE notification_messages
       SET retry_base = NEW.attempts,
           next_attempt_at = NULL,
           lease_owner = NULL,
           lease_expires_at = NULL,
           {{updated_at}} = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE id = NEW.id;
END;
