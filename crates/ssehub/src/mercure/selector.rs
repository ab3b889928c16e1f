//! Topic selectors: what a subscriber asks for (0.x `?topic=`, 1.0 `?match*=`) and what
//! a token grants (0.x `mercure.subscribe`/`publish`, 1.0 `authorization_details`).
//!
//! In 0.x a selector is `*` (every topic), an RFC 6570 URI template
//! (`https://example.com/books/{id}`), or any other string, which selects the topic equal
//! to it; a template always selects the topic equal to it too, so a topic that contains
//! braces can still be selected exactly. In 1.0 the matcher's type is explicit: `Exact`
//! (byte for byte, braces or not) or `URLPattern`; `*` is every topic in both.
//!
//! A selector is also the name of the room its subscribers join (`Selector::room`).
//! Exact topics and 0.x patterns are named as written, so both dialects share a topic's
//! room; a URL pattern, or an exact 1.0 topic that would read as a template, is named
//! behind [`RESERVED`], a noncharacter no topic or selector may contain, so that no
//! topic's room can be taken for a pattern's.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use url::Url;

use super::uri_template::{TemplateError, UriTemplate};
use super::url_pattern::{PatternError, UrlPatternMatcher};

/// The first character of a room name that is no topic (U+FDD0, a noncharacter).
pub(crate) const RESERVED: char = '\u{FDD0}';
const EXACT_ROOM: &str = "\u{FDD0}exact ";
const URL_PATTERN_ROOM: &str = "\u{FDD0}urlpattern ";

/// A 1.0 matcher's type, named as draft-08 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchType {
    Exact,
    UrlPattern,
}

impl MatchType {
    /// The canonical name (`Exact`, `URLPattern`), as in subscription topics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MatchType::Exact => "Exact",
            MatchType::UrlPattern => "URLPattern",
        }
    }

    /// Read a `match_type`: the canonical names, and the lower-case spellings.
    pub(crate) fn parse(s: &str) -> Option<MatchType> {
        match s {
            "Exact" | "exact" => Some(MatchType::Exact),
            "URLPattern" | "urlpattern" => Some(MatchType::UrlPattern),
            _ => None,
        }
    }
}

/// Why a 1.0 matcher is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MatcherError {
    #[error("it contains the {0} character U+{1:04X}")]
    Forbidden(&'static str, u32),
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// One topic selector.
#[derive(Clone)]
pub(crate) enum Selector {
    /// `*`: every topic.
    Any,
    /// The topic equal to this string.
    Exact(String),
    /// The topics the template expands to (and the topic equal to it).
    Template(UriTemplate),
    /// The topics a WHATWG URL Pattern matches (1.0).
    UrlPattern(Arc<UrlPatternMatcher>),
}

impl Selector {
    /// Read `s`. A string with a `{` is a template and must parse as one.
    pub(crate) fn parse(s: &str) -> Result<Selector, TemplateError> {
        if s == "*" {
            Ok(Selector::Any)
        } else if UriTemplate::is_template(s) {
            UriTemplate::parse(s).map(Selector::Template)
        } else {
            Ok(Selector::Exact(s.to_owned()))
        }
    }

    /// Read a 1.0 matcher of type `kind`; `base` is the hub's URL, against which a
    /// relative URL pattern is resolved. `*` is every topic whatever the type.
    pub(crate) fn parse_v1(s: &str, kind: MatchType, base: &Url) -> Result<Selector, MatcherError> {
        if let Some(c) = forbidden_char(s) {
            return Err(MatcherError::Forbidden(char_kind(c), c as u32));
        }
        Ok(match kind {
            _ if s == "*" => Selector::Any,
            MatchType::Exact => Selector::Exact(s.to_owned()),
            MatchType::UrlPattern => {
                Selector::UrlPattern(Arc::new(UrlPatternMatcher::parse(s, base)?))
            }
        })
    }

    /// Whether `topic` is selected.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(s) => s == topic,
            Selector::Template(t) => t.as_str() == topic || t.matches(topic),
            Selector::UrlPattern(p) => p.matches(topic),
        }
    }

    /// The selector as written.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(s) => s,
            Selector::Template(t) => t.as_str(),
            Selector::UrlPattern(p) => p.as_str(),
        }
    }

    /// Its 1.0 matcher type (a 0.x template has none: `None`).
    pub(crate) fn match_type(&self) -> Option<MatchType> {
        match self {
            Selector::Any | Selector::Exact(_) => Some(MatchType::Exact),
            Selector::UrlPattern(_) => Some(MatchType::UrlPattern),
            Selector::Template(_) => None,
        }
    }

    /// The name of the room of a 1.0 URL pattern `s`, without compiling it.
    pub(crate) fn url_pattern_room(s: &str) -> String {
        format!("{URL_PATTERN_ROOM}{s}")
    }

    /// The name of the room its subscribers join.
    pub(crate) fn room(&self) -> Cow<'_, str> {
        match self {
            Selector::Exact(s) if UriTemplate::is_template(s) => {
                Cow::Owned(format!("{EXACT_ROOM}{s}"))
            }
            Selector::UrlPattern(p) => Cow::Owned(format!("{URL_PATTERN_ROOM}{}", p.as_str())),
            other => Cow::Borrowed(other.as_str()),
        }
    }

    /// The selector a pattern room is named by (`None`: not a pattern's, or not one
    /// that compiles).
    pub(crate) fn from_room(name: &str, base: &Url) -> Option<Selector> {
        if let Some(s) = name.strip_prefix(EXACT_ROOM) {
            Some(Selector::Exact(s.to_owned()))
        } else if let Some(s) = name.strip_prefix(URL_PATTERN_ROOM) {
            Some(Selector::UrlPattern(Arc::new(
                UrlPatternMatcher::parse(s, base).ok()?,
            )))
        } else if is_pattern_name(name) {
            Selector::parse(name).ok()
        } else {
            None
        }
    }
}

/// Whether room `name` is a pattern's (`*`, a string with an expression, a reserved
/// name), without compiling it.
pub(crate) fn is_pattern_name(name: &str) -> bool {
    name == "*" || name.starts_with(RESERVED) || UriTemplate::is_template(name)
}

/// The first character `s` may not hold as a 1.0 topic or matcher: a control character
/// (C0, DEL, C1), a format character (Unicode's `Cf`: invisible, so a topic could look
/// like another), or the noncharacters behind which reserved room names hide.
pub(crate) fn forbidden_char(s: &str) -> Option<char> {
    s.chars()
        .find(|&c| c.is_control() || is_format(c) || ('\u{FDD0}'..='\u{FDEF}').contains(&c))
}

fn char_kind(c: char) -> &'static str {
    if c.is_control() {
        "control"
    } else if is_format(c) {
        "format"
    } else {
        "reserved"
    }
}

/// Unicode's general category `Cf` (format characters), which std does not expose.
fn is_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Selectors, as a token grants them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selectors(pub(crate) Vec<Selector>);

impl Selectors {
    /// Whether one of them selects `topic`.
    pub(crate) fn match_any(&self, topic: &str) -> bool {
        self.0.iter().any(|s| s.matches(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_templates_and_exact_strings() {
        let any = Selector::parse("*").unwrap();
        assert!(any.matches("https://example.com/anything"));
        let book = Selector::parse("https://example.com/books/{id}").unwrap();
        assert!(book.matches("https://example.com/books/1"));
        assert!(!book.matches("https://example.com/books/1/reviews"));
        assert!(
            book.matches("https://example.com/books/{id}"),
            "itself, exactly"
        );
        let exact = Selector::parse("https://example.com/books/1").unwrap();
        assert!(exact.matches("https://example.com/books/1"));
        assert!(!exact.matches("https://example.com/books/2"));
        assert!(Selector::parse("https://example.com/{unclosed").is_err());
        assert!(is_pattern_name("*") && is_pattern_name("/a/{b}") && !is_pattern_name("/a"));
    }

    #[test]
    fn v1_matchers_and_their_rooms() {
        let base = Url::parse("https://hub.example/.well-known/mercure").unwrap();
        let exact = Selector::parse_v1("https://e.com/{id}", MatchType::Exact, &base).unwrap();
        assert!(exact.matches("https://e.com/{id}"));
        assert!(
            !exact.matches("https://e.com/1"),
            "braces are no template in 1.0"
        );
        let room = exact.room();
        assert!(is_pattern_name(&room));
        assert!(Selector::from_room(&room, &base)
            .unwrap()
            .matches("https://e.com/{id}"));
        let plain = Selector::parse_v1("https://e.com/1", MatchType::Exact, &base).unwrap();
        assert_eq!(
            plain.room(),
            "https://e.com/1",
            "the same room as 0.x's topic"
        );
        let pattern = Selector::parse_v1("/books/:id", MatchType::UrlPattern, &base).unwrap();
        let from = Selector::from_room(&pattern.room(), &base).unwrap();
        assert!(from.matches("/books/7") && !from.matches("/authors/7"));
        let star = Selector::parse_v1("*", MatchType::UrlPattern, &base).unwrap();
        assert_eq!(star.room(), "*");
        for bad in ["a\u{7}b", "a\u{85}b", "a\u{200B}b", "\u{FDD0}x"] {
            assert!(
                Selector::parse_v1(bad, MatchType::Exact, &base).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(MatchType::parse("urlpattern"), Some(MatchType::UrlPattern));
        assert_eq!(MatchType::parse("Regex"), None);
    }
}
