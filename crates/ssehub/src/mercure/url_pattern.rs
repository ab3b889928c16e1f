//! Mercure 1.0's `match_urlpattern` matchers: WHATWG URL Patterns (the `urlpattern`
//! crate), with relative patterns and relative topics resolved against the hub's URL, as
//! draft-08 says, so that `/books/:id` selects the topic `/books/1` and also
//! `https://<the hub's host>/books/1`.
//!
//! The crate compiles each component of a pattern to a `regex` expression, and `regex`
//! matches in time linear in the input: the draft's defence against patterns crafted
//! to backtrack. A pattern `regex` cannot express (backreferences, look-around) fails
//! to parse: a 400 for a subscriber, an invalid token for a grant.

use std::fmt;

use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

/// One compiled URL pattern.
pub(crate) struct UrlPatternMatcher {
    source: String,
    pattern: UrlPattern,
    base: Url,
}

/// Why a string is no URL pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a URL pattern: {0}")]
pub(crate) struct PatternError(String);

impl UrlPatternMatcher {
    /// Compile `source`, a relative one against `base` (the hub's URL).
    pub(crate) fn parse(source: &str, base: &Url) -> Result<UrlPatternMatcher, PatternError> {
        let init =
            UrlPatternInit::parse_constructor_string::<regex::Regex>(source, Some(base.clone()))
                .map_err(|e| PatternError(e.to_string()))?;
        // `ignore_case` stays off: the draft forbids it (hosts are still compared
        // case-insensitively, since URL parsing lowercases them).
        let pattern = UrlPattern::parse(init, UrlPatternOptions::default())
            .map_err(|e| PatternError(e.to_string()))?;
        Ok(UrlPatternMatcher {
            source: source.to_owned(),
            pattern,
            base: base.clone(),
        })
    }

    /// Whether `topic` (a relative one resolved against the hub's URL) matches. A topic
    /// that is no URL, even relative to the hub's, matches no pattern.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        let Ok(url) = self.base.join(topic) else {
            return false;
        };
        self.pattern
            .test(UrlPatternMatchInput::Url(url))
            .unwrap_or(false)
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for UrlPatternMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Url {
        Url::parse("https://hub.example/.well-known/mercure").unwrap()
    }

    #[test]
    fn absolute_and_relative_patterns_and_topics() {
        let books = UrlPatternMatcher::parse("https://example.com/books/:id", &hub()).unwrap();
        assert!(books.matches("https://example.com/books/1"));
        assert!(!books.matches("https://example.com/books/1/reviews"));
        assert!(!books.matches("https://other.example/books/1"));
        assert!(
            !books.matches("/books/1"),
            "resolved against the hub's host"
        );
        let relative = UrlPatternMatcher::parse("/books/:id", &hub()).unwrap();
        assert!(relative.matches("/books/1"));
        assert!(relative.matches("https://hub.example/books/2"));
        assert!(!relative.matches("https://example.com/books/2"));
        assert!(UrlPatternMatcher::parse("https://example.com/(", &hub()).is_err());
    }

    /// The URL Pattern standard's examples (its introduction and syntax sections), as
    /// Mercure topics: (pattern, topic, matches).
    #[test]
    fn the_standards_examples() {
        let table: &[(&str, &str, bool)] = &[
            // Named groups match one segment.
            (
                "https://example.com/books/:id",
                "https://example.com/books/123",
                true,
            ),
            (
                "https://example.com/books/:id",
                "https://example.com/books",
                false,
            ),
            (
                "https://example.com/books/:id",
                "https://example.com/books/1/reviews",
                false,
            ),
            // A regular expression constrains a group.
            (
                "https://example.com/books/:id(\\d+)",
                "https://example.com/books/123",
                true,
            ),
            (
                "https://example.com/books/:id(\\d+)",
                "https://example.com/books/abc",
                false,
            ),
            // Modifiers: optional, one or more, zero or more.
            (
                "https://example.com/books/:id?",
                "https://example.com/books",
                true,
            ),
            (
                "https://example.com/books/:id?",
                "https://example.com/books/7",
                true,
            ),
            (
                "https://example.com/books/:path+",
                "https://example.com/books/a/b",
                true,
            ),
            (
                "https://example.com/books/:path+",
                "https://example.com/books",
                false,
            ),
            (
                "https://example.com/books/:path*",
                "https://example.com/books",
                true,
            ),
            // Wildcards, in the path and in the host.
            (
                "https://example.com/books/*",
                "https://example.com/books/a/b/c",
                true,
            ),
            (
                "https://example.com/books/*",
                "https://example.com/authors/1",
                false,
            ),
            (
                "https://*.example.com/books/:id",
                "https://cdn.example.com/books/1",
                true,
            ),
            (
                "https://*.example.com/books/:id",
                "https://example.com/books/1",
                false,
            ),
            ("*://example.com/x", "http://example.com/x", true),
            ("*://example.com/x", "https://example.com/x", true),
            // Groups with braces: an optional literal part.
            (
                "https://example.com/books{/old}?",
                "https://example.com/books",
                true,
            ),
            (
                "https://example.com/books{/old}?",
                "https://example.com/books/old",
                true,
            ),
            (
                "https://example.com/books{/old}?",
                "https://example.com/books/new",
                false,
            ),
            // Components: the search is matched too (absent in the pattern: any).
            (
                "https://example.com/search?q=*",
                "https://example.com/search?q=rust",
                true,
            ),
            (
                "https://example.com/search",
                "https://example.com/search?q=rust",
                true,
            ),
            (
                "https://example.com/search?q=a",
                "https://example.com/search?q=b",
                false,
            ),
            // The port is part of the pattern; the default port is no port.
            (
                "https://example.com:8080/*",
                "https://example.com:8080/x",
                true,
            ),
            ("https://example.com:8080/*", "https://example.com/x", false),
            ("https://example.com/*", "https://example.com:443/x", true),
            // Paths are case-sensitive; hosts are not (URLs lowercase them).
            (
                "https://example.com/Books",
                "https://example.com/books",
                false,
            ),
            (
                "https://example.com/books",
                "https://EXAMPLE.com/books",
                true,
            ),
            // Dot segments and percent-encoding are the URL parser's.
            (
                "https://example.com/books/:id",
                "https://example.com/x/../books/1",
                true,
            ),
            (
                "https://example.com/caf%C3%A9",
                "https://example.com/café",
                true,
            ),
        ];
        for &(pattern, topic, expected) in table {
            let p = UrlPatternMatcher::parse(pattern, &hub())
                .unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(p.matches(topic), expected, "{pattern} against {topic}");
        }
        // What the standard allows but a linear-time engine cannot do is refused, never
        // run with backtracking: look-around and backreferences.
        for pattern in [
            "https://example.com/:id((?=a)a)",
            "https://example.com/:id((a)\\1)",
        ] {
            assert!(
                UrlPatternMatcher::parse(pattern, &hub()).is_err(),
                "{pattern}"
            );
        }
    }
}
