-- Provider templates (Twilio Content API: WhatsApp messages outside the
-- 24-hour window must be sent as an approved template).
ALTER TABLE notification_messages ADD COLUMN content_sid TEXT;
ALTER TABLE notification_messages ADD COLUMN content_variables TEXT;

-- Claiming one channel at a time (when rate limits are in force).
CREATE INDEX IF NOT EXISTS notification_messages_open_channel
    ON notification_messages (channel, id) WHERE status IN ('pending', 'processing');
