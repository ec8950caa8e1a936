//! Surgery on SQLite's `CREATE TABLE` text, for the constraint changes
//! SQLite's ALTER TABLE cannot make: widening the status CHECK and letting
//! content columns hold NULL. (Applied with SQLite's documented
//! `writable_schema` procedure; the stored rows are not touched.)

/// The table's definitions (columns and table constraints) between the
/// outer parentheses, split at top-level commas.
fn items(create: &str) -> Option<(usize, usize, Vec<String>)> {
    let open = create.find('(')?;
    let close = create.rfind(')')?;
    let body = &create[open + 1..close];
    let mut out = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    for (i, c) in body.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                '[' => quote = Some(']'),
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(body[start..i].to_owned());
                    start = i + 1;
                }
                _ => {}
            },
        }
    }
    out.push(body[start..].to_owned());
    Some((open, close, out))
}

fn rebuild(create: &str, open: usize, close: usize, items: &[String]) -> String {
    format!("{}{}{}", &create[..=open], items.join(","), &create[close..])
}

/// The identifier an item starts with (a column definition's name), unquoted.
fn leading_name(item: &str) -> String {
    let t = item.trim_start();
    let (q, rest) = match t.chars().next() {
        Some(c @ ('"' | '`')) => (Some(c), &t[1..]),
        Some('[') => (Some(']'), &t[1..]),
        _ => (None, t),
    };
    match q {
        Some(q) => rest.split(q).next().unwrap_or("").to_owned(),
        None => rest
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("")
            .to_owned(),
    }
}

fn is_constraint_item(item: &str) -> bool {
    let first = leading_name(item).to_ascii_uppercase();
    matches!(
        first.as_str(),
        "CONSTRAINT" | "CHECK" | "PRIMARY" | "UNIQUE" | "FOREIGN"
    )
}

/// Every `CHECK (…)` in `text`: (start, end) of the whole clause.
fn check_clauses(text: &str) -> Vec<(usize, usize)> {
    let upper = text.to_ascii_uppercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = upper[from..].find("CHECK") {
        let at = from + pos;
        let after = &text[at + 5..];
        let Some(paren) = after.find('(') else { break };
        if !after[..paren].trim().is_empty() {
            from = at + 5;
            continue;
        }
        let open = at + 5 + paren;
        let mut depth = 0;
        let mut end = None;
        for (i, c) in text[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        out.push((at, end));
        from = end;
    }
    out
}

fn mentions(text: &str, column: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let col = column.to_ascii_lowercase();
    lower.match_indices(&col).any(|(i, _)| {
        let before = lower[..i].chars().last();
        let after = lower[i + col.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

/// The quoted words of `status IN ('a', 'b')` inside a CHECK clause, if
/// that is what it is.
fn in_list(check: &str, column: &str) -> Option<Vec<String>> {
    let lower = check.to_ascii_lowercase();
    let col_at = lower.find(&column.to_ascii_lowercase())?;
    let rest = &check[col_at + column.len()..];
    let rest = rest.trim_start_matches(['"', '`', ']']).trim_start();
    let rest = rest
        .strip_prefix("IN")
        .or_else(|| rest.strip_prefix("in"))?
        .trim_start();
    let inner = rest.strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    let words: Vec<String> = inner
        .split(',')
        .map(|w| w.trim().trim_matches('\'').to_owned())
        .collect();
    words.iter().all(|w| !w.is_empty()).then_some(words)
}

/// What a status CHECK allows today, or why it cannot be read.
pub(super) fn status_check_words(create: &str, column: &str) -> Result<Option<Vec<String>>, String> {
    let mut found = None;
    for (a, b) in check_clauses(create) {
        let clause = &create[a..b];
        if mentions(clause, column) {
            match in_list(clause, column) {
                Some(words) if found.is_none() => found = Some(words),
                _ => {
                    return Err(format!(
                        "the CHECK constraint `{}` on {column} cannot be widened automatically",
                        clause.split_whitespace().collect::<Vec<_>>().join(" ")
                    ))
                }
            }
        }
    }
    Ok(found)
}

/// `create` with the status CHECK allowing `words`, and NOT NULL removed
/// from `nullable` columns. `None` when nothing changes.
pub(super) fn rewrite(create: &str, status: &str, words: &[String], nullable: &[String]) -> Option<String> {
    let (open, close, mut items) = items(create)?;
    let mut changed = false;
    let list = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    for item in items.iter_mut() {
        for (a, b) in check_clauses(item).into_iter().rev() {
            let clause = item[a..b].to_owned();
            if mentions(&clause, status) && in_list(&clause, status).is_some() {
                let new = format!("CHECK ({status} IN ({list}))");
                if clause != new {
                    item.replace_range(a..b, &new);
                    changed = true;
                }
            }
        }
        if !is_constraint_item(item) && nullable.iter().any(|c| c.eq_ignore_ascii_case(&leading_name(item))) {
            let upper = item.to_ascii_uppercase();
            if let Some(pos) = upper.find("NOT NULL") {
                item.replace_range(pos..pos + "NOT NULL".len(), "");
                changed = true;
            }
        }
    }
    changed.then(|| rebuild(create, open, close, &items))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POS: &str = "CREATE TABLE notification_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL CHECK(channel IN ('sms','whatsapp','email')),
        recipient TEXT NOT NULL,
        message TEXT NOT NULL,
        status TEXT DEFAULT 'pending' CHECK(status IN ('pending','sent','failed')),
        created_at DATETIME DEFAULT CURRENT_TIMESTAMP
    )";

    #[test]
    fn reads_what_a_status_check_allows() {
        assert_eq!(
            status_check_words(POS, "status").unwrap(),
            Some(vec!["pending".into(), "sent".into(), "failed".into()])
        );
        assert_eq!(
            status_check_words("CREATE TABLE t (status TEXT)", "status").unwrap(),
            None
        );
        assert!(status_check_words("CREATE TABLE t (status TEXT CHECK (length(status) < 9))", "status").is_err());
    }

    #[test]
    fn widens_the_check_and_frees_content_columns_leaving_the_rest() {
        let words: Vec<String> = ["pending", "processing", "sent", "failed", "cancelled"]
            .map(String::from)
            .to_vec();
        let new = rewrite(POS, "status", &words, &["message".to_owned()]).unwrap();
        assert!(
            new.contains("CHECK (status IN ('pending', 'processing', 'sent', 'failed', 'cancelled'))"),
            "{new}"
        );
        assert!(
            new.contains("message TEXT ,") || new.contains("message TEXT \n") || new.contains("message TEXT ,"),
            "{new}"
        );
        assert!(!new.contains("message TEXT NOT NULL"), "{new}");
        assert!(
            new.contains("channel TEXT NOT NULL CHECK(channel IN ('sms','whatsapp','email'))"),
            "{new}"
        );
        assert!(new.contains("recipient TEXT NOT NULL"), "{new}");
        assert!(
            rewrite(&new, "status", &words, &["message".to_owned()]).is_none(),
            "idempotent"
        );
    }
}
