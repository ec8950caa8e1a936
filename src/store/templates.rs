//! Message templates, versioned per name: every save adds a version.

use chrono::{DateTime, Utc};

use super::rows::{MessageRow, TemplateVersion};
use super::{Result, Store};
use crate::clock::format_ts;
use crate::domain::TemplateDraft;

impl Store {
    /// Save a new version of a template; returns it. The version number
    /// grows across all locales of the name. The first locale saved is the
    /// default until another is saved as default; a new version of the
    /// default locale stays the default. Concurrent saves of one name are
    /// serialized.
    pub async fn put_template(&self, draft: &TemplateDraft, now: DateTime<Utc>) -> Result<TemplateVersion> {
        let sql = &self.sql;
        let (name, locale) = (draft.name.as_str(), draft.locale.as_str());
        let channel = draft.channel.map(|c| c.as_str());
        let parts_json = serde_json::to_string(&draft.parts).expect("parts serialize");
        let _turn = self.write_turn().await;
        let (version, is_default) = with_pool_retrying!(self, |pool| {
            if let Some(m) = &sql.mysql {
                let l = &m.template_lock_row;
                bound!(sqlx::query(&l.sql), l, [name]).execute(pool).await?;
            }
            let mut tx = pool.begin_with(self.sql.begin_write).await?;
            if let Some(lock) = &sql.template_lock {
                bound!(sqlx::query(&lock.sql), lock, [name]).execute(&mut *tx).await?;
            }
            let version: i64 = bound!(
                sqlx::query_scalar(&sql.template_next_version.sql),
                sql.template_next_version,
                [name]
            )
            .fetch_one(&mut *tx)
            .await?;
            let version = i32::try_from(version).unwrap_or(i32::MAX);
            let was_default: i64 = bound!(
                sqlx::query_scalar(&sql.template_is_default.sql),
                sql.template_is_default,
                [name, locale]
            )
            .fetch_one(&mut *tx)
            .await?;
            let is_default = draft.make_default || version == 1 || was_default > 0;
            if is_default {
                bound!(
                    sqlx::query(&sql.template_undefault.sql),
                    sql.template_undefault,
                    [name, locale]
                )
                .execute(&mut *tx)
                .await?;
            }
            bound!(
                sqlx::query(&sql.template_insert.sql),
                sql.template_insert,
                [
                    name,
                    version,
                    locale,
                    channel,
                    parts_json.as_str(),
                    i32::from(is_default),
                    format_ts(now)
                ]
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            (version, is_default)
        });
        Ok(TemplateVersion {
            name: name.to_owned(),
            version,
            locale: locale.to_owned(),
            channel: channel.map(str::to_owned),
            parts: draft.parts.clone(),
            is_default,
            created_at: Some(now),
        })
    }

    /// The latest version of each (name, locale), optionally for one name.
    pub async fn templates(&self, name: Option<&str>) -> Result<Vec<TemplateVersion>> {
        let s = &self.sql.templates;
        let rows = with_pool!(self, |pool| bound!(sqlx::query(&s.sql), s, [name])
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.template())
            .collect::<std::result::Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Delete every version of a template. Messages keep what they were rendered with.
    pub async fn delete_template(&self, name: &str) -> Result<bool> {
        let s = &self.sql.template_delete;
        let _turn = self.write_turn().await;
        let n = with_pool_retrying!(self, |pool| bound!(sqlx::query(&s.sql), s, [name])
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n > 0)
    }
}
