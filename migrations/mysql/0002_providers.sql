-- Provider templates (Twilio Content API: WhatsApp messages outside the
-- 24-hour window must be sent as an approved template).
ALTER TABLE notification_messages
    ADD COLUMN content_sid VARCHAR(64),
    ADD COLUMN content_variables LONGTEXT;
