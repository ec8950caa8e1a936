-- Provider templates (Twilio Content API: WhatsApp messages outside the
-- 24-hour window must be sent as an approved template).
ALTER TABLE notification_messages
    ADD COLUMN IF NOT EXISTS content_sid TEXT,
    ADD COLUMN IF NOT EXISTS content_variables TEXT;

