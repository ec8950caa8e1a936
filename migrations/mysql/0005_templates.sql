-- Message templates, versioned: saving a template adds a version; messages
-- keep the name and version they were rendered from.
CREATE TABLE IF NOT EXISTS notification_templates (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    version INT NOT NULL,
    locale VARCHAR(35) NOT NULL,
    channel VARCHAR(32),
    parts LONGTEXT NOT NULL,
    is_default INT NOT NULL DEFAULT 0,
    created_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    UNIQUE KEY notification_templates_version (name, locale, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- On a message: the template it came from, and (for rows inserted directly
-- with a template) the data to render it with when it is claimed.
ALTER TABLE notification_messages
    ADD COLUMN template VARCHAR(100),
    ADD COLUMN template_version INT,
    ADD COLUMN locale VARCHAR(35),
    ADD COLUMN template_data LONGTEXT;

-- One row per template name, locked while a version is saved: concurrent
-- saves of one name take turns (MySQL has no advisory transaction locks).
CREATE TABLE IF NOT EXISTS herald_template_locks (
    name VARCHAR(100) NOT NULL PRIMARY KEY
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
