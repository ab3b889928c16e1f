//! `MERCURE_EXTRA_DIRECTIVES`: the Caddyfile directives the reference hub's container
//! puts inside its `mercure { ... }` block, one per line, read as the `[mercure]` keys
//! they stand for.
//!
//! The reference hub ignored a directive it did not know, so a typo (`anonymus`) left
//! a hub silently different from the one meant; here an unknown directive is an error
//! naming it. Directives of the reference hub that ssehub does not apply are accepted
//! with a warning saying what happens instead; those whose absence would weaken
//! security (fetching keys from a JWKS URL) are refused.
//!
//! Syntax, as much of the Caddyfile as these directives use: words separated by
//! blanks, `"..."` (with `\"`) and `` `...` `` quoting, `#` comments, blocks opened by
//! a `{` that ends a line and closed by a `}`, and the placeholders `{$NAME}`,
//! `{$NAME:default}` and `{env.NAME}` replaced by the environment's values.

use std::time::Duration;

use toml::Value;

use super::compat::Setting;

/// The variable, for messages.
const VAR: &str = "MERCURE_EXTRA_DIRECTIVES";

/// What the directives set, in order (a later one wins), and the warnings they call for.
#[derive(Debug, Default)]
pub(crate) struct Directives {
    pub settings: Vec<Setting>,
    pub warnings: Vec<String>,
}

/// One directive: its line, name, arguments, and its block's lines (if any).
#[derive(Debug)]
struct Directive {
    line: usize,
    name: String,
    args: Vec<String>,
    block: Vec<(usize, Vec<String>)>,
}

/// Read `text` (the variable's value); `env` looks placeholders up.
pub(crate) fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Directives, String> {
    let mut out = Directives::default();
    for d in directives(text, env)? {
        apply(&d, &mut out)?;
    }
    Ok(out)
}

/// A directive's name as shown in messages: itself if it looks like one, else not at
/// all (a key pasted on a line of its own is not a directive, and not to be printed).
fn shown(name: &str) -> String {
    let looks_like_a_name = name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if looks_like_a_name {
        format!("`{name}`")
    } else {
        "(a word that is not a directive's name, not shown)".into()
    }
}

fn at(line: usize) -> String {
    format!("{VAR}, line {line}")
}

fn apply(d: &Directive, out: &mut Directives) -> Result<(), String> {
    let name = d.name.as_str();
    let here = || format!("{} ({})", at(d.line), shown(name));
    let origin = || format!("{VAR} ({name}, line {})", d.line);
    let no_block = || -> Result<(), String> {
        if d.block.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: takes no block", here()))
        }
    };
    let count = |min: usize, max: usize| -> Result<(), String> {
        no_block()?;
        if (min..=max).contains(&d.args.len()) {
            return Ok(());
        }
        let wanted = match (min, max) {
            (0, 0) => "no argument".to_owned(),
            (a, b) if a == b => format!("{a} argument(s)"),
            (a, usize::MAX) => format!("at least {a} argument(s)"),
            (a, b) => format!("{a} to {b} arguments"),
        };
        // The arguments are not shown: a key's directive may hold a secret.
        Err(format!("{}: takes {wanted}, got {}", here(), d.args.len()))
    };
    let mut set = |path: &'static [&'static str], value: Value| {
        out.settings.push(Setting {
            path,
            value,
            origin: origin(),
        });
    };
    match name {
        "anonymous" => {
            count(0, 0)?;
            set(&["mercure", "anonymous"], Value::Boolean(true));
        }
        "cors_origins" | "publish_origins" => {
            count(1, usize::MAX)?;
            let list = Value::Array(d.args.iter().cloned().map(Value::String).collect());
            let path: &'static [&'static str] = if name == "cors_origins" {
                &["mercure", "cors_origins"]
            } else {
                &["mercure", "publish_origins"]
            };
            set(path, list);
        }
        "cookie_name" => {
            count(1, 1)?;
            set(
                &["mercure", "cookie_name"],
                Value::String(d.args[0].clone()),
            );
        }
        "heartbeat" => {
            count(1, 1)?;
            let every = duration(&d.args[0]).map_err(|e| format!("{}: {e}", here()))?;
            set(&["mercure", "heartbeat"], seconds(every));
        }
        "publisher_jwt" | "subscriber_jwt" => {
            count(1, 2)?;
            let (key, alg): (&'static [&'static str], &'static [&'static str]) =
                if name == "publisher_jwt" {
                    (
                        &["mercure", "publisher_jwt_key"],
                        &["mercure", "publisher_jwt_alg"],
                    )
                } else {
                    (
                        &["mercure", "subscriber_jwt_key"],
                        &["mercure", "subscriber_jwt_alg"],
                    )
                };
            set(key, Value::String(d.args[0].clone()));
            // Without an algorithm the one set before stays, as in the reference hub.
            if let Some(a) = d.args.get(1) {
                set(alg, Value::String(a.clone()));
            }
        }
        "subscriptions" => {
            count(0, 0)?;
            set(&["mercure", "subscriptions"], Value::Boolean(true));
        }
        "write_timeout" | "dispatch_timeout" => {
            count(1, 1)?;
            duration(&d.args[0]).map_err(|e| format!("{}: {e}", here()))?;
            let what = if name == "write_timeout" {
                "streams are not cut after a fixed time: they stay open while the client \
                 reads (heartbeats, TCP keep-alive and the slow-consumer policy close dead \
                 or stuck ones) and end at their token's exp"
            } else {
                "a publish is never held up by a subscriber: each has its own bounded \
                 queue, and one that falls behind is closed (it reconnects and resumes \
                 from its Last-Event-ID)"
            };
            out.warnings
                .push(format!("{}: accepted, not applied: {what}", here()));
        }
        "transport" => transport(d, out, &here())?,
        "transport_url" => {
            count(1, 1)?;
            let url = d.args[0].as_str();
            let kind = url.split("://").next().unwrap_or(url);
            if !matches!(kind, "bolt" | "local") {
                return Err(format!(
                    "{}: the transport {kind:?} is not supported: ssehub keeps history in \
                     memory, or in Redis with [redis] url (SSEHUB_REDIS_URL)",
                    here()
                ));
            }
            out.warnings.push(format!(
                "{}: accepted (the reference hub's deprecated form of `transport`): \
                 history is kept in memory, not in the bolt file ([mercure.history]; on \
                 disk with [history] dir, or in Redis with [redis] url)",
                here()
            ));
        }
        "protocol_version_compatibility" => {
            count(1, 1)?;
            if d.args[0] != "7" && d.args[0] != "8" {
                out.warnings.push(format!(
                    "{}: ssehub speaks both dialects side by side, 0.x (draft-07, `topic=`) \
                     and 1.0 (draft-08, `match=`), each request by its parameters",
                    here()
                ));
            }
        }
        "ui" | "demo" => {
            count(0, 1)?;
            out.warnings.push(format!(
                "{}: accepted, not applied: ssehub has no Mercure UI; its own demo page is \
                 at / ([demo] page)",
                here()
            ));
        }
        "cache_size_approx" | "cache" | "lru_cache" | "topic_selector_cache" => {
            no_block()?;
            out.warnings.push(format!(
                "{}: accepted, not applied: ssehub keeps its own cache of which selectors \
                 match a topic",
                here()
            ));
        }
        "publisher_jwks_url" | "subscriber_jwks_url" => {
            return Err(format!(
                "{}: keys from a JWKS URL are not supported yet: give the key itself \
                 ({} KEY ALG, or MERCURE_{}_JWT_KEY)",
                here(),
                name.trim_end_matches("_jwks_url").to_owned() + "_jwt",
                name.trim_end_matches("_jwks_url").to_ascii_uppercase(),
            ));
        }
        _ => {
            return Err(format!(
                "{}: unknown directive {}: ssehub refuses what it does not know (the \
                 reference hub ignored it silently). Known: anonymous, subscriptions, \
                 cors_origins, publish_origins, cookie_name, heartbeat, write_timeout, \
                 dispatch_timeout, publisher_jwt, subscriber_jwt, transport, transport_url, \
                 protocol_version_compatibility, ui, demo, cache_size_approx, \
                 topic_selector_cache",
                at(d.line),
                shown(name)
            ));
        }
    }
    Ok(())
}

/// `transport NAME { ... }`: the reference hub's history store. ssehub does not read
/// bolt databases: one is accepted, its `size` bounds each topic's history, and the
/// history is kept in memory (or on disk in ssehub's own format with `[history] dir`).
fn transport(d: &Directive, out: &mut Directives, here: &str) -> Result<(), String> {
    let Some(kind) = d.args.first() else {
        return Err(format!(
            "{here}: names the transport (`transport bolt {{ ... }}`)"
        ));
    };
    if d.args.len() > 1 {
        return Err(format!("{here}: takes one name, then a block"));
    }
    match kind.as_str() {
        "bolt" | "local" => {}
        other => {
            return Err(format!(
                "{here}: the transport {:?} is not supported: ssehub keeps history in \
                 memory, or in Redis with [redis] url (SSEHUB_REDIS_URL)",
                other.chars().take(40).collect::<String>()
            ))
        }
    }
    for (line, words) in &d.block {
        let (option, rest) = words.split_first().expect("block lines are not empty");
        let one = || -> Result<&String, String> {
            match rest {
                [v] => Ok(v),
                _ => Err(format!("{}: `{option}` takes one argument", at(*line))),
            }
        };
        match option.as_str() {
            "path" | "bucket_name" | "cleanup_frequency" => {
                one()?;
            }
            "size" => {
                let n: usize = one()?
                    .parse()
                    .map_err(|_| format!("{}: `size` is a number of updates", at(*line)))?;
                // bolt's size bounds all topics together; per topic it is at least that.
                if n > 0 {
                    out.settings.push(Setting {
                        path: &["mercure", "history", "max_events"],
                        value: Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
                        origin: format!("{VAR} (transport size, line {line})"),
                    });
                }
            }
            other => {
                return Err(format!(
                    "{}: unknown option {} in the transport block (known: path, size, \
                     cleanup_frequency, bucket_name)",
                    at(*line),
                    shown(other)
                ))
            }
        }
    }
    out.warnings.push(format!(
        "{here}: accepted, its file is not read: each topic's history is kept in memory \
         ([mercure.history]; a bolt `size` bounds each topic's events) and is lost at \
         restart, unless [history] dir (SSEHUB_HISTORY_DIR) keeps it on disk in ssehub's \
         own format (or [redis] url in Redis)"
    ));
    Ok(())
}

/// A duration as a TOML value of seconds.
fn seconds(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::Integer(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    } else {
        Value::Float(d.as_secs_f64())
    }
}

/// A Caddy (Go) duration: `40s`, `1m30s`, `1.5h`, `500ms`, `2d`, or `0`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{s:?} is not a duration (a number and a unit, repeated: 40s, 1m30s, 500ms, \
             1.5h, 2d)"
        )
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let s2 = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s2;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += n * unit;
        rest = &rest[u_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// The directives of `text`, placeholders replaced.
fn directives(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Directive>, String> {
    let mut out: Vec<Directive> = Vec::new();
    let mut open: Option<Directive> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut words = words(raw, env).map_err(|e| format!("{}: {e}", at(line)))?;
        if words.is_empty() {
            continue;
        }
        if let Some(d) = open.as_mut() {
            if words == ["}"] {
                out.push(open.take().expect("open"));
                continue;
            }
            if words.iter().any(|w| w == "{" || w == "}") {
                return Err(format!(
                    "{}: a block inside a block, or a `}}` not alone on its line",
                    at(line)
                ));
            }
            d.block.push((line, words));
            continue;
        }
        let opens = words.last().is_some_and(|w| w == "{");
        if opens {
            words.pop();
        }
        if words.iter().any(|w| w == "{" || w == "}") || words.is_empty() {
            return Err(format!(
                "{}: a brace out of place (a block opens with `{{` at the end of a \
                 directive's line and closes with `}}` alone on a line)",
                at(line)
            ));
        }
        let name = words.remove(0);
        let d = Directive {
            line,
            name,
            args: words,
            block: Vec::new(),
        };
        if opens {
            open = Some(d);
        } else {
            out.push(d);
        }
    }
    if let Some(d) = open {
        return Err(format!(
            "{}: the block of {} is not closed",
            at(d.line),
            shown(&d.name)
        ));
    }
    Ok(out)
}

/// The words of one line: blanks separate them, quotes group them, `#` at a word's
/// start comments the rest out.
fn words(line: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut word = String::new();
        if first == '"' || first == '`' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == first {
                    closed = true;
                    break;
                }
                if c == '\\' && first == '"' && chars.peek() == Some(&'"') {
                    word.push(chars.next().expect("peeked"));
                    continue;
                }
                word.push(c);
            }
            if !closed {
                return Err(format!("a quote ({first}) is not closed"));
            }
            out.push(placeholders(&word, env));
            continue;
        }
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            word.push(c);
        }
        out.push(placeholders(&word, env));
    }
    Ok(out)
}

/// `word` with `{$NAME}`, `{$NAME:default}` and `{env.NAME}` replaced by the
/// environment's values (unset: empty, or the default).
fn placeholders(word: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        let tail = &rest[start..];
        let inner = tail
            .strip_prefix("{$")
            .map(|t| (t, true))
            .or_else(|| tail.strip_prefix("{env.").map(|t| (t, false)));
        let Some((inner, dollar)) = inner else {
            out.push_str(&rest[..=start]);
            rest = &rest[start + 1..];
            continue;
        };
        let Some(end) = inner.find('}') else {
            out.push_str(rest);
            return out;
        };
        let spec = &inner[..end];
        let (name, default) = match spec.split_once(':') {
            Some((n, d)) if dollar => (n, d),
            _ => (spec, ""),
        };
        out.push_str(&rest[..start]);
        out.push_str(&env(name).unwrap_or_else(|| default.to_owned()));
        let consumed = start + (tail.len() - inner.len()) + end + 1;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn read(text: &str) -> Result<Directives, String> {
        parse(text, &no_env)
    }

    /// The settings as `path = value` lines.
    fn settings(d: &Directives) -> Vec<String> {
        d.settings
            .iter()
            .map(|s| format!("{} = {}", s.path.join("."), s.value))
            .collect()
    }

    #[test]
    fn the_directives_people_use_become_keys() {
        let d = read(
            "anonymous\n\
             cors_origins https://a.example  https://b.example\n\
             publish_origins *\n\
             cookie_name   myCookie\n\
             heartbeat 15s\n\
             \n\
             # a comment\n\
             publisher_jwt \"pub key\" HS512   # the publisher's\n\
             subscriber_jwt sub-key\n",
        )
        .unwrap();
        assert_eq!(
            settings(&d),
            [
                "mercure.anonymous = true",
                r#"mercure.cors_origins = ["https://a.example", "https://b.example"]"#,
                r#"mercure.publish_origins = ["*"]"#,
                r#"mercure.cookie_name = "myCookie""#,
                "mercure.heartbeat = 15",
                r#"mercure.publisher_jwt_key = "pub key""#,
                r#"mercure.publisher_jwt_alg = "HS512""#,
                r#"mercure.subscriber_jwt_key = "sub-key""#,
            ]
        );
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert!(d.settings[0].origin.contains("line 1"));
    }

    #[test]
    fn accepted_but_not_applied_directives_warn_saying_what_happens() {
        let d = read(
            "subscriptions\n\
             write_timeout 600s\n\
             transport bolt {\n\
             \tpath /data/mercure.db\n\
             \tsize 5000\n\
             }\n\
             protocol_version_compatibility 7\n",
        )
        .unwrap();
        assert_eq!(
            settings(&d),
            [
                "mercure.subscriptions = true",
                "mercure.history.max_events = 5000"
            ]
        );
        let all = d.warnings.join("\n");
        assert_eq!(d.warnings.len(), 2, "{all}");
        assert!(
            all.contains("`write_timeout`") && all.contains("not applied"),
            "{all}"
        );
        assert!(
            all.contains("`transport`") && all.contains("in memory"),
            "{all}"
        );
        assert!(all.contains("line 3"), "{all}");
    }

    #[test]
    fn an_unknown_directive_is_refused_by_name() {
        let e = read("anonymous\nanonymus\n").unwrap_err();
        assert!(e.contains("`anonymus`") && e.contains("line 2"), "{e}");
        assert!(e.contains(VAR), "{e}");
        // A secret pasted on a line of its own is not printed.
        let e = read("anonymous\n!ChangeThis-S3cret!\n").unwrap_err();
        assert!(e.contains("line 2") && !e.contains("S3cret"), "{e}");
        let e = read("transport bolt {\n  path /x\n  sise 1\n}\n").unwrap_err();
        assert!(e.contains("`sise`") && e.contains("line 3"), "{e}");
        let e = read("transport redis\n").unwrap_err();
        assert!(e.contains("redis") && e.contains("[redis]"), "{e}");
        let e = read("publisher_jwks_url https://x/jwks\n").unwrap_err();
        assert!(e.contains("JWKS"), "{e}");
    }

    #[test]
    fn bad_arguments_are_refused_without_showing_keys() {
        for (text, needle) in [
            ("anonymous yes\n", "`anonymous`"),
            ("heartbeat soon\n", "soon"),
            ("cors_origins\n", "`cors_origins`"),
            ("publisher_jwt a-s3cret HS256 extra\n", "`publisher_jwt`"),
            ("transport bolt {\n path /x\n", "not closed"),
            ("cookie_name \"unclosed\n", "quote"),
            ("}\n", "brace"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(!e.contains("s3cret"), "{text}: {e}");
        }
    }

    #[test]
    fn placeholders_take_the_environments_values() {
        let env = |name: &str| (name == "KEY").then(|| "from-env".to_owned());
        let d = parse(
            "publisher_jwt {env.KEY} {$ALG:RS256}\ncookie_name x{$NONE}y\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            settings(&d),
            [
                r#"mercure.publisher_jwt_key = "from-env""#,
                r#"mercure.publisher_jwt_alg = "RS256""#,
                r#"mercure.cookie_name = "xy""#,
            ]
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(duration("40s").unwrap(), Duration::from_secs(40));
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "40", "-1s", "1x", "s", "1..5s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
