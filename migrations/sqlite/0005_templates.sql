-- Message templates, versioned: saving a template adds a version; messages
-- keep the name and version they were rendered from.
CREATE TABLE IF NOT EXISTS notification_templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    locale TEXT NOT NULL,
    channel TEXT,
    parts TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (name, locale, version)
);

-- On a message: the template it came from, and (for rows inserted directly
-- with a template) the data to render it with when it is claimed.
ALTER TABLE notification_messages ADD COLUMN template TEXT;
ALTER TABLE notification_messages ADD COLUMN template_version INTEGER;
ALTER TABLE notification_messages ADD COLUMN locale TEXT;
ALTER TABLE notification_messages ADD COLUMN template_data TEXT;
