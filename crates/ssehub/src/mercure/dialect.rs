//! Which of Mercure's two dialects a subscriber's request speaks, chosen per request so
//! that one hub serves both: `topic=` is 0.x (draft-07), `match`, `match_exact` and
//! `match_urlpattern` are 1.0 (draft-08; also spelled `matchExact` and
//! `matchURLPattern`, as later revisions of the draft do). Mixing them, or any other
//! parameter in the reserved `match` namespace, is a 400 naming the parameter: a
//! misspelt matcher fails loudly instead of selecting nothing.

use super::selector::MatchType;

/// A request's dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// draft-07: `topic=`, the `mercure` claim, `Last-Event-ID` in the answer.
    V0,
    /// draft-08: `match*=`, access tokens, `Mercure-Last-Event-ID` in the answer.
    V1,
}

/// A 1.0 request's matchers, in order: each with its type.
pub(crate) type Matchers<'a> = Vec<(MatchType, &'a str)>;

/// The matcher type a 1.0 subscribe parameter names (`None`: not a matcher parameter).
fn matcher_param(name: &str) -> Option<MatchType> {
    match name {
        "match" | "match_exact" | "matchExact" => Some(MatchType::Exact),
        "match_urlpattern" | "matchURLPattern" => Some(MatchType::UrlPattern),
        _ => None,
    }
}

/// Whether `name` is in the `match` namespace (ASCII case-insensitive prefix).
fn reserved(name: &str) -> bool {
    name.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("match"))
}

/// The dialect of a subscribe request with these query pairs, and its 1.0 matchers in
/// order (empty for 0.x); or why the request is malformed.
pub(crate) fn of_subscribe(pairs: &[(String, String)]) -> Result<(Version, Matchers<'_>), String> {
    let mut matchers = Vec::new();
    let mut topic = false;
    for (name, value) in pairs {
        if name == "topic" {
            topic = true;
        } else if let Some(kind) = matcher_param(name) {
            matchers.push((kind, value.as_str()));
        } else if reserved(name) {
            return Err(format!(
                "unknown matcher parameter {name:?}: a 1.0 subscriber uses match, \
                 match_exact or match_urlpattern"
            ));
        }
        if topic && !matchers.is_empty() {
            let (kind, _) = matchers[0];
            let shown = if kind == MatchType::Exact {
                "match"
            } else {
                "match_urlpattern"
            };
            return Err(format!(
                "parameter {shown:?} (Mercure 1.0) cannot be mixed with \"topic\" (Mercure 0.x) \
                 in one request: use one dialect"
            ));
        }
    }
    Ok(if matchers.is_empty() {
        (Version::V0, matchers)
    } else {
        (Version::V1, matchers)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_parameters_choose_the_dialect() {
        let topic = pairs(&[("topic", "a")]);
        let (v, m) = of_subscribe(&topic).unwrap();
        assert_eq!((v, m.len()), (Version::V0, 0));
        let p = pairs(&[
            ("match", "a"),
            ("match_urlpattern", "/b/:id"),
            ("matchExact", "c"),
            ("last_event_id", "x"),
        ]);
        let (v, m) = of_subscribe(&p).unwrap();
        assert_eq!(v, Version::V1);
        assert_eq!(
            m,
            [
                (MatchType::Exact, "a"),
                (MatchType::UrlPattern, "/b/:id"),
                (MatchType::Exact, "c")
            ]
        );
        let mixed = of_subscribe(&pairs(&[("topic", "a"), ("match", "b")])).unwrap_err();
        assert!(
            mixed.contains("\"match\"") && mixed.contains("topic"),
            "{mixed}"
        );
        let unknown = of_subscribe(&pairs(&[("match_regex", "a")])).unwrap_err();
        assert!(unknown.contains("\"match_regex\""), "{unknown}");
        assert!(
            of_subscribe(&pairs(&[("MATCH", "a")])).is_err(),
            "case-sensitive names"
        );
        assert_eq!(of_subscribe(&pairs(&[])).unwrap().0, Version::V0);
    }
}
