//! `DATABASE_URL`, parsed once: which backend, and a form safe to print.

use std::fmt;

/// The database Herald works in.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:path`, `sqlite://path` (created if missing), `sqlite::memory:`.
    Sqlite(String),
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
    /// `mysql://…` (MySQL 8.0+ or MariaDB 10.6+); `mariadb://…` is taken
    /// as the same.
    Mysql(String),
}

impl DatabaseUrl {
    /// Recognise the backend by the URL's scheme.
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        let url = url.trim();
        let scheme = url
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "sqlite" => Ok(DatabaseUrl::Sqlite(url.to_owned())),
            "postgres" | "postgresql" => Ok(DatabaseUrl::Postgres(url.to_owned())),
            "mysql" => Ok(DatabaseUrl::Mysql(url.to_owned())),
            "mariadb" => Ok(DatabaseUrl::Mysql(format!("mysql{}", &url["mariadb".len()..]))),
            _ => Err(format!(
                "DATABASE_URL must start with sqlite: (e.g. sqlite://herald.db), postgres:// or mysql:// (or mariadb://) (got {:?})",
                redact_url(url)
            )),
        }
    }

    /// The URL as given (it may hold a password: never print it; see [`Self::redacted`]).
    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite(u) | DatabaseUrl::Postgres(u) | DatabaseUrl::Mysql(u) => u,
        }
    }

    /// `sqlite`, `postgres` or `mysql`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
            DatabaseUrl::Mysql(_) => "mysql",
        }
    }

    /// The URL with every secret part blanked, for logs and errors.
    pub fn redacted(&self) -> String {
        redact_url(self.as_str())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Query parameters that carry secrets in database URLs.
const SECRET_PARAMS: [&str; 4] = ["password", "sslpassword", "passfile", "sslkey"];

/// A URL with its password (the user-info part up to the *last* `@`, so a
/// password containing `@` is blanked whole) and secret query parameters
/// replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match before_query.split_once("://") {
        Some((scheme, rest)) => {
            // The authority ends at the first '/' after the last '@'.
            let (userinfo, host_and_path) = match rest.rfind('@') {
                Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
                None => (None, rest),
            };
            match userinfo {
                Some(ui) => match ui.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***@{host_and_path}"),
                    None => format!("{scheme}://{ui}@{host_and_path}"),
                },
                None => before_query.to_owned(),
            }
        }
        None => before_query.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_recognised_once() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://herald.db").unwrap().backend_name(),
            "sqlite"
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://h/db").unwrap().backend_name(),
            "postgres"
        );
        let e = DatabaseUrl::parse("oracle://u:secret@h/db").unwrap_err();
        assert!(e.contains("DATABASE_URL") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn every_secret_part_is_blanked() {
        assert_eq!(
            redact_url("postgres://herald:hunter2@db:5432/x"),
            "postgres://herald:***@db:5432/x"
        );
        // A password containing '@' is blanked whole.
        assert_eq!(
            redact_url("postgres://herald:p@ss@w0rd@db/x"),
            "postgres://herald:***@db/x"
        );
        assert_eq!(
            redact_url("postgres://db/x?user=h&password=hunter2&sslmode=require"),
            "postgres://db/x?user=h&password=***&sslmode=require"
        );
        assert_eq!(redact_url("sqlite://herald.db"), "sqlite://herald.db");
        let d = format!("{:?}", DatabaseUrl::parse("postgres://u:pw@h/db").unwrap());
        assert!(!d.contains("pw@"), "{d}");
    }
}
