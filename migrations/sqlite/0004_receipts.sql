-- Delivery receipts are kept apart from `status` (which stays "the provider
-- accepted it"): the latest delivery state, never moving backwards.
ALTER TABLE notification_messages ADD COLUMN delivery_status TEXT;
ALTER TABLE notification_messages ADD COLUMN delivery_rank INTEGER;
ALTER TABLE notification_messages ADD COLUMN delivered_at TEXT;
ALTER TABLE notification_messages ADD COLUMN delivery_error_code TEXT;

CREATE INDEX IF NOT EXISTS notification_messages_provider_message_id
    ON notification_messages (provider_message_id) WHERE provider_message_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS notification_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES notification_messages (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    event TEXT NOT NULL,
    delivery_status TEXT,
    occurred_at TEXT,
    received_at TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notification_events_message ON notification_events (message_id, id);

CREATE TABLE IF NOT EXISTS notification_suppressions (
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (channel, recipient)
);
