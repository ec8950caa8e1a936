-- The queue table. A POS may already have created it (the seed guide's
-- system did), so it is adopted: created if missing, then any column Herald
-- needs is added.
CREATE TABLE IF NOT EXISTS notification_messages (
    id BIGSERIAL PRIMARY KEY,
    {{channel}} TEXT NOT NULL,
    {{recipient}} TEXT NOT NULL
);

ALTER TABLE notification_messages
    ADD COLUMN IF NOT EXISTS {{subject}} TEXT,
    ADD COLUMN IF NOT EXISTS {{body}} TEXT,
    ADD COLUMN IF NOT EXISTS {{html_body}} TEXT,
    ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT 'pending',
    ADD COLUMN IF NOT EXISTS attempts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS {{error}} TEXT,
    ADD COLUMN IF NOT EXISTS provider TEXT,
    ADD COLUMN IF NOT EXISTS provider_message_id TEXT,
    ADD COLUMN IF NOT EXISTS send_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS {{sent_at}} TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS {{created_at}} TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS {{updated_at}} TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS metadata TEXT,
    -- Herald's bookkeeping: when a retry is due, who holds the lease and
    -- until when, and how many attempts came before the current round
    -- (a manual retry starts a new round of MAX_RETRIES).
    ADD COLUMN IF NOT EXISTS next_attempt_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS lease_owner TEXT,
    ADD COLUMN IF NOT EXISTS lease_expires_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS retry_base INTEGER NOT NULL DEFAULT 0;

ALTER TABLE notification_messages DROP CONSTRAINT IF EXISTS notification_messages_status_check;
ALTER TABLE notification_messages ADD CONSTRAINT notification_messages_status_check
    CHECK (status IN ('pending', 'processing', 'sent', 'failed', 'cancelled'{{extra_statuses}}));

-- Claiming only ever looks at unfinished rows: this index stays small
-- however many millions of sent rows the table holds.
CREATE INDEX IF NOT EXISTS notification_messages_open
    ON notification_messages (id) WHERE status IN ('pending', 'processing');
-- The guide's monitoring query: ORDER BY created_at DESC LIMIT 50.
CREATE INDEX IF NOT EXISTS notification_messages_created_at ON notification_messages ({{created_at}});
CREATE INDEX IF NOT EXISTS notification_messages_failed
    ON notification_messages (id) WHERE status = 'failed';

-- Every provider call, kept after the message row has moved on.
CREATE TABLE IF NOT EXISTS notification_attempts (
    id BIGSERIAL PRIMARY KEY,
    message_id BIGINT NOT NULL REFERENCES notification_messages (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    provider TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    provider_message_id TEXT,
    worker TEXT
);
CREATE INDEX IF NOT EXISTS notification_attempts_message ON notification_attempts (message_id, attempt);

-- Wake listening processors when rows arrive, whoever inserts them.
-- One notification per statement: a 1,000-row insert wakes them once.
CREATE OR REPLACE FUNCTION herald_notify_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_messages', '');
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS herald_notify_insert ON notification_messages;
CREATE TRIGGER herald_notify_insert AFTER INSERT ON notification_messages
    FOR EACH STATEMENT EXECUTE FUNCTION herald_notify_new();

-- The guide's manual retry, `UPDATE ... SET status = 'pending'` on a failed
-- (or cancelled) row: start a fresh round of retries, clear the schedule
-- and the lease, and wake the processors.
CREATE OR REPLACE FUNCTION herald_requeue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.retry_base := NEW.attempts;
    NEW.next_attempt_at := NULL;
    NEW.lease_owner := NULL;
    NEW.lease_expires_at := NULL;
    NEW.{{updated_at}} := now();
    PERFORM pg_notify('herald_messages', '');
    RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS herald_requeue ON notification_messages;
CREATE TRIGGER herald_requeue BEFORE UPDATE OF status ON notification_messages
    FOR EACH ROW WHEN (OLD.status IN ('failed', 'cancelled') AND NEW.status = 'pending')
    EXECUTE FUNCTION herald_requeue();
