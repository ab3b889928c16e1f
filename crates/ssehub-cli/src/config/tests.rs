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
    for (section, keys) in shown {
        assert!(text.contains(&format!("[{section}]")), "[{section}]");
        for key in keys.as_table().unwrap().keys() {
            assert!(text.contains(&format!("\n{key} = ")), "{section}.{key}");
        }
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
}
