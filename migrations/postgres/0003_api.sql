-- Idempotency keys for POST /api/messages(/batch): a retried request with the
-- same key returns the messages the first one created.
CREATE TABLE IF NOT EXISTS herald_idempotency_keys (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    message_ids TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS herald_idempotency_keys_created ON herald_idempotency_keys (created_at);
