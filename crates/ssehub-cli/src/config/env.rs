//! Overrides from the environment: `SSEHUB_<SECTION>_<KEY>=VALUE` sets `KEY` of
//! `[SECTION]` (`SSEHUB_SERVER_LISTEN=0.0.0.0:2015`, `SSEHUB_AUTH_JWT_SECRET=...`), and
//! `SSEHUB_MERCURE_HISTORY_<KEY>` sets `KEY` of `[mercure.history]`.
//!
//! A value is read as TOML when it is one (`true`, `15`, `["a", "b"]`), else as a
//! string, so that addresses and secrets need no quotes. Only variables whose first word
//! names a section are read (`SSEHUB_PORT` and `SSEHUB_CONFIG` are flags' variables);
//! an unknown key in a known section, or a value that does not fit, is an error naming
//! the variable (and its value, unless the key is unknown or looks like a secret).

use anyhow::bail;
use toml::{Table, Value};

use super::{secrets, Config};

const PREFIX: &str = "SSEHUB_";
const SECTIONS: &[&str] = &[
    "server", "tls", "auth", "cors", "sse", "limits", "history", "redis", "demo", "observe", "log",
    "mercure",
];
/// Tables inside a section: `SSEHUB_MERCURE_HISTORY_MAX_EVENTS` is `max_events` of
/// `[mercure.history]` (no key of `[mercure]` starts with `history_`).
const SUBTABLES: &[(&str, &str)] = &[("mercure", "history")];

/// The path of `key` of `[section]`: `["section", "key"]`, or `["section", "sub",
/// "key"]` for a key of one of its tables.
fn path_of(section: &str, key: &str) -> Vec<String> {
    for (s, sub) in SUBTABLES {
        if section == *s {
            if let Some(rest) = key.strip_prefix(sub).and_then(|r| r.strip_prefix('_')) {
                return vec![section.to_owned(), (*sub).to_owned(), rest.to_owned()];
            }
        }
    }
    vec![section.to_owned(), key.to_owned()]
}

/// Set `value` at `path` of `table`, making the tables on the way.
pub(super) fn set_path(
    table: &mut Table,
    path: &[impl AsRef<str>],
    value: Value,
) -> anyhow::Result<()> {
    let (last, tables) = path.split_last().expect("a path has a key");
    let mut t = table;
    let mut at = String::new();
    for name in tables {
        let name = name.as_ref();
        if !at.is_empty() {
            at.push('.');
        }
        at.push_str(name);
        let entry = t
            .entry(name.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        let Some(inner) = entry.as_table_mut() else {
            bail!("[{at}] in the config file is not a table");
        };
        t = inner;
    }
    t.insert(last.as_ref().to_owned(), value);
    Ok(())
}

/// Set in `table` what the variables `vars` override; the dotted keys they set.
pub(super) fn apply(
    table: &mut Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<Vec<String>> {
    let mut overrides: Vec<(String, String, String, String)> = vars
        .filter_map(|(name, raw)| {
            let rest = name.strip_prefix(PREFIX)?.to_ascii_lowercase();
            let (section, key) = rest.split_once('_')?;
            SECTIONS
                .contains(&section)
                .then(|| (name.clone(), section.to_owned(), key.to_owned(), raw))
        })
        .collect();
    overrides.sort();
    let mut set = Vec::new();
    for (name, section, key, raw) in overrides {
        let path = path_of(&section, &key);
        let value = match value_for(&path, &raw) {
            Ok(value) => value,
            Err(e) => {
                // A secret's value is never shown, nor an unknown key's: its value does
                // not help fix it, and a misspelled secret (`..._JWT_SECRT`) looks
                // like none.
                let message = e.to_string();
                let hide = secrets::looks_secret(&key) || secrets::is_unknown_key(&message);
                if !hide {
                    return Err(e.context(format!("{name}={raw}")));
                }
                let message = secrets::scrub(&message, &[&raw], true);
                return Err(anyhow::Error::msg(message).context(format!("{name}=(hidden)")));
            }
        };
        set_path(table, &path, value)?;
        set.push(path.join("."));
    }
    Ok(set)
}

/// The value `raw` stands for at `path`: TOML if that fits the key, else the string
/// itself.
fn value_for(path: &[String], raw: &str) -> anyhow::Result<Value> {
    let as_toml = toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    let mut last = None;
    for candidate in as_toml.into_iter().chain([Value::String(raw.to_owned())]) {
        match fits(path, candidate.clone()) {
            Ok(()) => return Ok(candidate),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("one candidate at least"))
}

/// Whether `value` alone at `path` makes a valid configuration.
fn fits(path: &[String], value: Value) -> anyhow::Result<()> {
    let mut table = Table::new();
    set_path(&mut table, path, value)?;
    Value::Table(table).try_into::<Config>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let mut table = Table::new();
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        apply(&mut table, vars)?;
        Ok(Value::Table(table).try_into()?)
    }

    #[test]
    fn variables_set_keys_of_their_section() {
        let c = load(&[
            ("SSEHUB_SERVER_LISTEN", "0.0.0.0:8080"),
            ("SSEHUB_SERVER_LISTEN_BACKLOG", "8192"),
            ("SSEHUB_SSE_KEEP_ALIVE", "2.5"),
            ("SSEHUB_AUTH_JWT_SECRET", "12345"),
            ("SSEHUB_AUTH_ALLOW_ANONYMOUS_SUBSCRIBE", "public.*,news"),
            ("SSEHUB_AUTH_ALLOW_ANONYMOUS_PUBLISH", "true"),
            ("SSEHUB_PORT", "1"),
            ("SSEHUB_CONFIG", "x.toml"),
            ("HOME", "/root"),
        ])
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.server.listen_backlog, 8192, "a key with an underscore");
        assert_eq!(c.sse.keep_alive, Duration::from_millis(2500));
        assert_eq!(
            c.auth.jwt_secret.as_deref(),
            Some("12345"),
            "a number stays a string"
        );
        assert_eq!(c.auth.allow_anonymous_subscribe, ["public.*", "news"]);
        assert!(c.auth.allow_anonymous_publish);
    }

    #[test]
    fn mercure_variables_and_its_history_table() {
        let c = load(&[
            ("SSEHUB_MERCURE_ENABLED", "true"),
            (
                "SSEHUB_MERCURE_CORS_ORIGINS",
                "https://a.example,https://b.example",
            ),
            ("SSEHUB_MERCURE_HEARTBEAT", "0"),
            ("SSEHUB_MERCURE_HISTORY_MAX_EVENTS", "7"),
            ("SSEHUB_MERCURE_HISTORY_ENABLED", "false"),
        ])
        .unwrap();
        assert!(c.mercure.enabled);
        assert_eq!(
            c.mercure.cors_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(c.mercure.heartbeat, Duration::ZERO);
        assert_eq!(c.mercure.history.max_events, 7);
        assert!(!c.mercure.history.enabled);
        assert_eq!(c.history.max_events, 1000, "[history] is another table");
        let e = format!(
            "{:#}",
            load(&[("SSEHUB_MERCURE_HISTORY_MAX_EVENTZ", "1")]).unwrap_err()
        );
        assert!(e.contains("SSEHUB_MERCURE_HISTORY_MAX_EVENTZ"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_variable() {
        let e = format!("{:#}", load(&[("SSEHUB_SERVER_LISTENN", "x")]).unwrap_err());
        assert!(
            e.contains("SSEHUB_SERVER_LISTENN") && e.contains("listenn"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            load(&[("SSEHUB_SSE_OUTBOX_LIMIT", "lots")]).unwrap_err()
        );
        assert!(e.contains("SSEHUB_SSE_OUTBOX_LIMIT=lots"), "{e}");
        // Unknown (misspelled) or secret-looking: named, the value not shown.
        for name in ["SSEHUB_AUTH_JWT_SECRT", "SSEHUB_SERVER_ADMIN_TOKEN"] {
            let e = format!("{:#}", load(&[(name, "v4lue")]).unwrap_err());
            assert!(e.contains(name) && !e.contains("v4lue"), "{e}");
        }
        let e = format!(
            "{:#}",
            load(&[("SSEHUB_AUTH_ADMIN_TOKEN", "[")])
                .unwrap_or_default()
                .auth
                .admin_token
                .unwrap_or_default()
        );
        assert_eq!(e, "[");
    }
}
