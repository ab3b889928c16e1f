//! Topic selectors: what a subscriber asks for (`?topic=`) and what a token grants
//! (`mercure.subscribe`, `mercure.publish`). A selector is `*` (every topic), an RFC 6570
//! URI template (`https://example.com/books/{id}`), or any other string, which selects
//! the topic equal to it. A selector always selects the topic equal to it, template or
//! not, so a topic that contains braces can still be selected exactly.

use std::fmt;

use super::uri_template::{TemplateError, UriTemplate};

/// One topic selector.
#[derive(Clone)]
pub(crate) enum Selector {
    /// `*`: every topic.
    Any,
    /// The topic equal to this string.
    Exact(String),
    /// The topics the template expands to (and the topic equal to it).
    Template(UriTemplate),
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

    /// Whether `topic` is selected.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(s) => s == topic,
            Selector::Template(t) => t.as_str() == topic || t.matches(topic),
        }
    }

    /// The selector as written: the name of the room its subscribers join.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(s) => s,
            Selector::Template(t) => t.as_str(),
        }
    }
}

/// Whether room `name` is a pattern's (`*`, or a string with an expression), without
/// compiling it.
pub(crate) fn is_pattern_name(name: &str) -> bool {
    name == "*" || UriTemplate::is_template(name)
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
}
