-- Delivery receipts are kept apart from `status` (which stays "the provider
-- accepted it"): the latest delivery state, never moving backwards.
ALTER TABLE notification_messages
    ADD COLUMN IF NOT EXISTS delivery_status TEXT,
    ADD COLUMN IF NOT EXISTS delivery_rank INTEGER,
    ADD COLUMN IF NOT EXISTS delivered_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS delivery_error_code TEXT;

-- Receipts find their message by the provider's id.
CREATE INDEX IF NOT EXISTS notification_messages_provider_message_id
    ON notification_messages (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- Every receipt, as received.
CREATE TABLE IF NOT EXISTS notification_events (
    id BIGSERIAL PRIMARY KEY,
    message_id BIGINT NOT NULL REFERENCES notification_messages (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    event TEXT NOT NULL,
    delivery_status TEXT,
    occurred_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notification_events_message ON notification_events (message_id, id);

-- Recipients who must not be messaged on a channel.
CREATE TABLE IF NOT EXISTS notification_suppressions (
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, recipient)
);
