//! The configuration's own tests: the example file, refusals that name the key, secrets.

use super::*;

fn from(text: &str) -> anyhow::Result<Config> {
    let c: Config = toml::from_str(text)?;
    c.validate()?;
    Ok(c)
}

#[test]
fn an_empty_file_is_the_demo() {
    assert_eq!(from("").unwrap(), Config::default());
}

#[test]
fn the_example_file_parses_and_says_the_defaults() {
    let text = include_str!("../../ssehub.example.toml");
    let example = from(text).expect("the example parses");
    assert_eq!(example, Config::default(), "the example shows the defaults");
    // Every key of the effective configuration is in the example (commented out
    // when it has no default).
    let shown: toml::Table = toml::from_str(&Config::default().to_redacted_toml()).unwrap();
    fn every_key(text: &str, section: &str, keys: &toml::Table) {
        assert!(text.contains(&format!("[{section}]")), "[{section}]");
        for (key, value) in keys {
            match value.as_table() {
                // A table in a section: `[mercure.history]`.
                Some(inner) => every_key(text, &format!("{section}.{key}"), inner),
                None => assert!(text.contains(&format!("\n{key} = ")), "{section}.{key}"),
            }
        }
    }
    for (section, keys) in shown {
        every_key(text, &section, keys.as_table().unwrap());
    }
}

#[test]
fn the_examples_commented_keys_parse_too() {
    let text = include_str!("../../ssehub.example.toml");
    let mut uncommented = String::new();
    let mut n = 0;
    for line in text.lines() {
        let key = line.strip_prefix("# ").filter(|l| {
            l.split_once(" = ")
                .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        });
        // One key of each pair that excludes the other.
        let skip = ["jwt_public_key", "publish_token"];
        // (The Mercure keys do not exclude each other.)
        match key {
            Some(k) if !skip.iter().any(|s| k.starts_with(s)) => {
                n += 1;
                uncommented.push_str(k);
            }
            _ => uncommented.push_str(line),
        }
        uncommented.push('\n');
    }
    assert!(n >= 10, "{n} commented keys");
    let c: Config = toml::from_str(&uncommented).expect("every commented key parses");
    assert_eq!(c.auth.audience.as_deref(), Some("ssehub"));
    assert!(c.server.also_listen.is_some() && c.tls.cert.is_some());
    assert!(c.mercure.publisher_jwt_key.is_some() && c.mercure.subscriber_jwt_key.is_some());
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let e = format!("{:#}", from("[server]\nlissten = \"x\"").unwrap_err());
    assert!(e.contains("lissten"), "{e}");
    let e = format!("{:#}", from("[sse]\nkeep_alive = \"soon\"").unwrap_err());
    assert!(e.contains("keep_alive") && e.contains("soon"), "{e}");
    let e = format!("{:#}", from("[server]\nlisten = \"nowhere\"").unwrap_err());
    assert!(e.contains("listen") && e.contains("nowhere"), "{e}");
    let e = format!("{:#}", from("[sse]\nslow_consumer = \"wait\"").unwrap_err());
    assert!(e.contains("slow_consumer") && e.contains("wait"), "{e}");
    let e = format!(
        "{:#}",
        from("[auth]\nallow_anonymous_subscribe = [\"a*b\"]").unwrap_err()
    );
    assert!(
        e.contains("allow_anonymous_subscribe") && e.contains("a*b"),
        "{e}"
    );
    let e = format!("{:#}", from("[nope]\n").unwrap_err());
    assert!(e.contains("nope"), "{e}");
    let e = format!(
        "{:#}",
        from("[cors]\nallowed_origins = \"*\"\nallow_credentials = true").unwrap_err()
    );
    assert!(e.contains("allow_credentials"), "{e}");
}

#[test]
fn secrets_are_not_printed() {
    let c = from("[auth]\njwt_secret = \"s3cret\"\n[redis]\nurl = \"redis://u:pw@h:1/0\"").unwrap();
    let shown = c.to_redacted_toml();
    assert!(
        !shown.contains("s3cret") && !shown.contains("pw@"),
        "{shown}"
    );
    let c = from(
        "[mercure]\nenabled = true\npublisher_jwt_key = \"pub-s3cret\"\n\
         subscriber_jwt_key = \"sub-s3cret\"\n",
    )
    .unwrap();
    let shown = c.to_redacted_toml() + &c.describe_mercure();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("publisher_jwt_key = \"(hidden)\""),
        "{shown}"
    );
    assert!(shown.contains("HS256 secret (hidden)"), "{shown}");
}

/// The configuration from `text` and the variables `vars`, checked.
fn with_vars(text: &str, vars: &[(&str, &str)]) -> anyhow::Result<Config> {
    let file = std::env::temp_dir().join(format!(
        "ssehub-unit-{}-{}.toml",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&file, text).unwrap();
    let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let loaded = Config::load_with(Some(&file), vars.collect());
    let _ = std::fs::remove_file(&file);
    let c = loaded?;
    c.validate()?;
    Ok(c)
}

#[test]
fn mercure_precedence_file_then_mercure_variables_then_ssehub_variables() {
    let file = "[mercure]\nenabled = true\nanonymous = true\npublisher_jwt_key = \"file-key\"\n\
                cookie_name = \"fromFile\"\nheartbeat = 5\n";
    let c = with_vars(file, &[]).unwrap();
    assert_eq!(c.mercure.cookie_name, "fromFile");
    let c = with_vars(
        file,
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", "variable-key"),
            (
                "MERCURE_EXTRA_DIRECTIVES",
                "cookie_name fromDirective\nheartbeat 1m",
            ),
        ],
    )
    .unwrap();
    assert_eq!(c.mercure.publisher_jwt_key.as_deref(), Some("variable-key"));
    assert_eq!(c.mercure.cookie_name, "fromDirective");
    assert_eq!(c.mercure.heartbeat.as_secs(), 60);
    assert_eq!(
        c.named("mercure.cookie_name"),
        "mercure.cookie_name (from MERCURE_EXTRA_DIRECTIVES (cookie_name, line 1))"
    );
    let c = with_vars(
        file,
        &[
            ("MERCURE_EXTRA_DIRECTIVES", "cookie_name fromDirective"),
            ("SSEHUB_MERCURE_COOKIE_NAME", "fromSsehub"),
        ],
    )
    .unwrap();
    assert_eq!(c.mercure.cookie_name, "fromSsehub");
    assert_eq!(c.named("mercure.cookie_name"), "mercure.cookie_name");
}

#[test]
fn mercure_variables_never_turn_the_hub_on() {
    let c = with_vars(
        "",
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", "k"),
            ("MERCURE_EXTRA_DIRECTIVES", "not-even-read"),
            ("SERVER_NAME", ":80"),
        ],
    )
    .unwrap();
    assert!(!c.mercure.enabled);
    assert_eq!(c.mercure.publisher_jwt_key, None);
    assert_eq!(
        c.server.listen.to_string(),
        "127.0.0.1:2015",
        "SERVER_NAME too"
    );
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("MERCURE_EXTRA_DIRECTIVES, MERCURE_PUBLISHER_JWT_KEY")
            && c.warnings[0].contains("SSEHUB_MERCURE_ENABLED=true"),
        "{}",
        c.warnings[0]
    );
    let c = with_vars("", &[("SERVER_NAME", "example.com")]).unwrap();
    assert!(
        c.warnings.is_empty(),
        "SERVER_NAME alone is nobody's business"
    );
}

#[test]
fn server_name_sets_the_listener_under_ssehub_server_listen() {
    let on = [
        ("SSEHUB_MERCURE_ENABLED", "true"),
        ("SSEHUB_MERCURE_ANONYMOUS", "true"),
    ];
    let vars = |extra: &[(&'static str, &'static str)]| {
        let mut v = vec![("MERCURE_PUBLISHER_JWT_KEY", "k")];
        v.extend_from_slice(&on);
        v.extend_from_slice(extra);
        v
    };
    let file = "[server]\nlisten = \"127.0.0.1:1\"\n";
    let c = with_vars(file, &vars(&[("SERVER_NAME", ":8080")])).unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    let c = with_vars(
        file,
        &vars(&[
            ("SERVER_NAME", ":8080"),
            ("SSEHUB_SERVER_LISTEN", "127.0.0.1:9"),
        ]),
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:9");
    // HTTPS needs a certificate: ssehub obtains none.
    let e = format!(
        "{:#}",
        with_vars(file, &vars(&[("SERVER_NAME", "hub.example")])).unwrap_err()
    );
    assert!(
        e.contains("SERVER_NAME=hub.example") && e.contains("[tls]"),
        "{e}"
    );
    let c = with_vars(
        file,
        &vars(&[
            ("SERVER_NAME", "localhost"),
            ("SSEHUB_TLS_SELF_SIGNED", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:443");
}

#[test]
fn mercure_refusals_name_the_key_and_its_variable() {
    let on = "[mercure]\nenabled = true\n";
    for (text, vars, needles) in [
        (on, vec![], vec!["mercure.publisher_jwt_key"]),
        (
            on,
            vec![("MERCURE_PUBLISHER_JWT_KEY", "k")],
            vec!["mercure.subscriber_jwt_key", "anonymous"],
        ),
        (
            on,
            vec![
                ("MERCURE_PUBLISHER_JWT_KEY", "a-s3cret"),
                ("MERCURE_PUBLISHER_JWT_ALG", "RS256"),
            ],
            vec!["mercure.publisher_jwt_key (from MERCURE_PUBLISHER_JWT_KEY)"],
        ),
        (
            on,
            vec![
                ("MERCURE_PUBLISHER_JWT_KEY", "a-s3cret"),
                ("MERCURE_EXTRA_DIRECTIVES", "anonymous\ncors_origins *"),
            ],
            vec![
                "mercure.cors_origins (from MERCURE_EXTRA_DIRECTIVES",
                "\"*\"",
            ],
        ),
        (
            "[mercure]\nenabled = true\nanonymous = true\npublisher_jwt_key = \"a-s3cret\"\n\
             publisher_jwt_alg = \"HS1\"\n",
            vec![],
            vec!["mercure.publisher_jwt_alg", "HS1"],
        ),
        (
            on,
            vec![("MERCURE_EXTRA_DIRECTIVES", "anonymous\nfoo_bar 1")],
            vec!["`foo_bar`", "line 2"],
        ),
    ] {
        let e = format!("{:#}", with_vars(text, &vars).unwrap_err());
        for needle in needles {
            assert!(e.contains(needle), "{text} {vars:?}: {needle} in {e}");
        }
        assert!(!e.contains("s3cret"), "{e}");
    }
}
