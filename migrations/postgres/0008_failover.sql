-- Circuit breakers, one row per provider, shared by every worker on this
-- database: a worker that opens a circuit (a provider down, or refusing
-- Herald's credentials) writes it here, the others read it within a
-- second, and one worker at a time probes it (`probe_owner`) before it
-- closes. `generation` grows with every change, so a worker only takes
-- what is newer than what it knows.
CREATE TABLE IF NOT EXISTS herald_circuits (
    provider TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    open_until TIMESTAMPTZ,
    opens INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    probe_owner TEXT,
    probe_until TIMESTAMPTZ,
    generation BIGINT NOT NULL DEFAULT 0,
    changed_at TIMESTAMPTZ NOT NULL
);

-- WhatsApp → SMS fallback (WHATSAPP_FALLBACK=sms): the SMS row points at the
-- WhatsApp message it replaces, and that message at its SMS. A message
-- falls back once at most: the unique index says so, whoever asks.
ALTER TABLE notification_messages
    ADD COLUMN IF NOT EXISTS fallback_of BIGINT,
    ADD COLUMN IF NOT EXISTS fallback_message_id BIGINT;
CREATE UNIQUE INDEX IF NOT EXISTS notification_messages_fallback_of
    ON notification_messages (fallback_of) WHERE fallback_of IS NOT NULL;

-- Status webhooks to the POS (Standard Webhooks). Endpoints: where, which
-- event types (`,message.sent,message.failed,` or `,*,`), the signing
-- secret and, while a rotation's overlap lasts, the previous one.
CREATE TABLE IF NOT EXISTS herald_webhook_endpoints (
    id BIGSERIAL PRIMARY KEY,
    url TEXT NOT NULL,
    description TEXT,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until TIMESTAMPTZ,
    enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    failing_since TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- The outbox: one row per event and endpoint, written in the same
-- transaction as the change it tells of, so no event is lost if Herald
-- stops between the two. The row is small (which event, about which
-- message); `payload`, the request body, is written when the event is
-- first sent, for every endpoint at once, and every attempt and replay
-- sends it unchanged. A delivery is due at `next_attempt_at`; claiming
-- moves that to the lease's end, so an abandoned claim is due again.
CREATE TABLE IF NOT EXISTS herald_webhook_outbox (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL,
    endpoint_id BIGINT NOT NULL REFERENCES herald_webhook_endpoints (id) ON DELETE CASCADE,
    message_id BIGINT,
    type TEXT NOT NULL,
    payload TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_owner TEXT,
    delivered_at TIMESTAMPTZ,
    last_status INTEGER,
    last_error TEXT
);
-- Each endpoint's due deliveries, in the order they fall due: a dispatcher
-- claims per endpoint, so one endpoint's backlog never hides another's.
CREATE INDEX IF NOT EXISTS herald_webhook_outbox_due
    ON herald_webhook_outbox (endpoint_id, next_attempt_at, id) WHERE status = 'pending';
-- A message's events reach an endpoint in order: a delivery waits while an
-- earlier one for the same message and endpoint is pending. The message
-- leads, so each look is one index probe (led by the endpoint, a generic
-- plan walked every pending delivery of the endpoint for each candidate).
CREATE INDEX IF NOT EXISTS herald_webhook_outbox_order
    ON herald_webhook_outbox (message_id, endpoint_id, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS herald_webhook_outbox_endpoint ON herald_webhook_outbox (endpoint_id, created_at);
CREATE INDEX IF NOT EXISTS herald_webhook_outbox_event ON herald_webhook_outbox (event_id);

-- Every delivery attempt: the endpoint's delivery log.
CREATE TABLE IF NOT EXISTS herald_webhook_attempts (
    id BIGSERIAL PRIMARY KEY,
    outbox_id BIGINT NOT NULL REFERENCES herald_webhook_outbox (id) ON DELETE CASCADE,
    endpoint_id BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    status INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS herald_webhook_attempts_endpoint ON herald_webhook_attempts (endpoint_id, id);
CREATE INDEX IF NOT EXISTS herald_webhook_attempts_outbox ON herald_webhook_attempts (outbox_id);
