//! Configuration errors that never show a secret.
//!
//! toml's error shows the line it is about, value included, and serde's messages quote
//! the value they did not expect (`invalid type: integer `12345``). That is what a
//! person fixing a typo wants, unless the value is a secret: a misspelled `jwt_secert`,
//! an `admin_token` in the wrong section, a secret of the wrong type, and the message
//! lands in a terminal, a CI log, a bug report. So the value is left out, and the error
//! still names the key, the file and the line, when:
//!
//! - the key's name, or a table's it is in, looks like a secret: it contains one of
//!   [`SECRET_WORDS`], case-insensitively, known key or not;
//! - the key is unknown: its value is never needed to fix that, and a misspelled secret
//!   (`jwt_secrt`) matches no word;
//! - the line shown holds a secret's value too (an inline table), or is inside one (a
//!   multi-line string).

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// Words that make a key's value a secret, anywhere in its name (case-insensitive):
/// secrets and tokens, passwords (`pass`, `pwd`), keys (`key`: a path to one is hidden
/// too, which costs little), credentials, private data, salts, sessions, and URLs and
/// DSNs, which carry passwords (`redis://:pw@host`). Not `auth`: that is a section's
/// name, and a table's name makes all it holds secret.
pub(crate) const SECRET_WORDS: &[&str] = &[
    "secret",
    "token",
    "pass",
    "pwd",
    "key",
    "credential",
    "private",
    "salt",
    "session",
    "url",
    "dsn",
];

/// What a message shows in place of a value it hides.
const HIDDEN: &str = "(hidden)";

/// Whether the value of the key `name` may be a secret, by its name.
pub(crate) fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// Whether `message` (serde's) says a key is unknown: its value is not shown then.
pub(crate) fn is_unknown_key(message: &str) -> bool {
    message.contains("unknown field")
}

/// One `key = value` of a file: its dotted path and where its key and value are.
struct Entry {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
    /// A string, number, ...: not a table or an array, whose text is its entries'.
    leaf: bool,
    secret: bool,
}

/// Every entry of `text` that parses (all of them but the broken ones, if it does not).
fn entries(text: &str) -> Vec<Entry> {
    let (table, _) = DeTable::parse_recoverable(text);
    let mut out = Vec::new();
    walk(table.get_ref(), "", false, &mut out);
    out
}

fn walk(table: &DeTable<'_>, prefix: &str, secret: bool, out: &mut Vec<Entry>) {
    for (key, value) in table.iter() {
        let name: &str = key.get_ref();
        let path = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        };
        let secret = secret || looks_secret(name);
        let leaf = !matches!(value.get_ref(), DeValue::Table(_) | DeValue::Array(_));
        out.push(Entry {
            path: path.clone(),
            key: key.span(),
            value: value.span(),
            leaf,
            secret,
        });
        walk_value(value.get_ref(), &path, secret, out);
    }
}

fn walk_value(value: &DeValue<'_>, path: &str, secret: bool, out: &mut Vec<Entry>) {
    match value {
        DeValue::Table(t) => walk(t, path, secret, out),
        DeValue::Array(items) => {
            for item in items {
                walk_value(item.get_ref(), path, secret, out);
            }
        }
        _ => {}
    }
}

/// toml's error `e` for the file `text`, as a message: toml's own (the line and the
/// value) when nothing there may be a secret; else the position, the key and what is
/// wrong, without the line or the value.
pub(crate) fn describe(text: &str, e: &toml::de::Error) -> String {
    let all = entries(text);
    let Some(span) = e.span() else {
        // No line to show: only the message, which may still quote a value.
        let secrets: Vec<&str> = all
            .iter()
            .filter(|en| en.secret && en.leaf)
            .map(|en| &text[en.value.clone()])
            .collect();
        return scrub(&e.to_string(), &secrets, false);
    };
    let at = span.start.min(text.len());
    // The entry the error is about: the innermost one from whose key to whose value it
    // points.
    let entry = all
        .iter()
        .filter(|en| en.key.start <= at && at <= en.value.end.max(en.key.end))
        .min_by_key(|en| en.value.end.max(en.key.end) - en.key.start);
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[line_start..line_end];
    let unknown = is_unknown_key(e.message());
    let secret_on_the_line = all
        .iter()
        .any(|en| en.secret && en.value.start < line_end && line_start < en.value.end);
    let hide =
        unknown || entry.is_some_and(|en| en.secret) || looks_secret(line) || secret_on_the_line;
    if !hide {
        return e.to_string();
    }
    let mut values: Vec<&str> = all
        .iter()
        .filter(|en| en.leaf && (en.secret || (unknown && entry.is_some_and(|x| x.key == en.key))))
        .map(|en| &text[en.value.clone()])
        .collect();
    // A string's text without its quotes too: serde quotes it its own way.
    let unquoted: Vec<&str> = values.iter().map(|v| v.trim_matches(['"', '\''])).collect();
    values.extend(unquoted);
    let line_number = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let key = entry.map_or(String::new(), |en| format!(" (`{}`)", en.path));
    // What serde quotes is the value of the entry the error is about: hidden if that one
    // is (a secret of the wrong type); else only the secrets' values are.
    let quoted = unknown || entry.is_none_or(|en| en.secret);
    let message = scrub(e.message(), &values, quoted);
    format!(
        "TOML error at line {line_number}, column {column}{key}: {message}\n\
         (the line is not shown: its key is unknown or may hold a secret)"
    )
}

/// `message` without `values`, nor, with `quoted`, anything serde quotes that is not
/// a key's name (`integer `12345``, `string "abc"`).
pub(crate) fn scrub(message: &str, values: &[&str], quoted: bool) -> String {
    let mut out = message.to_owned();
    let mut values: Vec<&str> = values.iter().copied().filter(|v| !v.is_empty()).collect();
    // The longest first: a value that holds another is hidden whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        out = out.replace(v, HIDDEN);
    }
    if !quoted {
        return out;
    }
    let mut shown = String::with_capacity(out.len());
    for (i, part) in out.split('`').enumerate() {
        if i > 0 {
            shown.push('`');
        }
        // Odd parts are between backticks: key names stay, anything else goes.
        if i % 2 == 1 && !is_key_name(part) {
            shown.push_str(HIDDEN);
        } else {
            shown.push_str(part);
        }
    }
    let mut out = String::with_capacity(shown.len());
    for (i, part) in shown.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        out.push_str(if i % 2 == 1 { HIDDEN } else { part });
    }
    out
}

/// A bare key's name, as serde names fields and variants: `jwt_secret`, `drop-event`.
fn is_key_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        let e = toml::from_str::<super::super::Config>(text).unwrap_err();
        describe(text, &e)
    }

    #[test]
    fn secret_values_are_never_shown() {
        for (text, value, key) in [
            (
                "[auth]\njwt_secert = \"v4lue\"\n",
                "v4lue",
                "auth.jwt_secert",
            ),
            (
                "[server]\nadmin_token = \"v4lue\"\n",
                "v4lue",
                "server.admin_token",
            ),
            ("[auth]\njwt_secret = 918273\n", "918273", "auth.jwt_secret"),
            (
                "[auth]\njwt_secret = 9_18_273\n",
                "918273",
                "auth.jwt_secret",
            ),
            ("[auth]\njwt_secret = 1.5e3\n", "1500", "auth.jwt_secret"),
            (
                "[auth]\nadmin_token = [\"v4lue\"]\n",
                "v4lue",
                "auth.admin_token",
            ),
            (
                "[auth]\nadmin_token = { a = \"v4lue\" }\n",
                "v4lue",
                "auth.admin_token",
            ),
            ("[redis]\nurl = 5\n", "5", "redis.url"),
            ("[secrets]\nx = \"v4lue\"\n", "v4lue", "secrets"),
            (
                "auth = { admin_token = \"v4lue\", leeway = \"soon\" }\n",
                "v4lue",
                "auth.leeway",
            ),
            (
                "[auth]\nadmin_token = [\n\"v4lue\",\n]\n",
                "v4lue",
                "auth.admin_token",
            ),
            // Not TOML at all: the line is not shown either.
            ("[auth]\njwt_secret = v4lue\n", "v4lue", "line 2"),
        ] {
            let shown = error(text);
            assert!(!shown.contains(value), "{text}: {shown}");
            assert!(shown.contains(key), "{text}: names {key}: {shown}");
            assert!(shown.contains("line "), "{text}: {shown}");
        }
    }

    #[test]
    fn other_errors_show_the_line_and_the_value() {
        let shown = error("[sse]\nkeep_alive = \"soon\"\n");
        assert!(shown.contains("keep_alive = \"soon\""), "{shown}");
        let shown = error("[sse]\nslow_consumer = \"wait\"\n");
        assert!(shown.contains("wait"), "{shown}");
    }

    #[test]
    fn secret_looking_names() {
        for name in [
            "jwt_secret",
            "admin_token",
            "PASSWORD",
            "db_pwd",
            "api_key",
            "credentials",
            "private",
            "url",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in [
            "auth",
            "listen",
            "leeway",
            "keep_alive",
            "prefix",
            "max_age",
        ] {
            assert!(!looks_secret(name), "{name}");
        }
        assert_eq!(
            scrub(
                "invalid type: integer `12`, expected `jwt_secret`",
                &[],
                true
            ),
            "invalid type: integer `(hidden)`, expected `jwt_secret`"
        );
    }
}
