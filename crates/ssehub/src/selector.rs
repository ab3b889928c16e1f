//! Room selectors: which rooms a rule or a permission applies to.
//!
//! Three forms, and no others (no regular expressions: selectors come from
//! configuration and tokens, and must be cheap and unsurprising to evaluate):
//! - an exact room name: `news`;
//! - `*`: every room;
//! - a prefix followed by `*`: `orders.*` matches `orders.42` and `orders.` but not
//!   `orders`.

use std::fmt;
use std::str::FromStr;

/// Which rooms something applies to: an exact name, `*`, or a prefix ending in `*`.
///
/// ```
/// use ssehub::RoomSelector;
///
/// let s: RoomSelector = "orders.*".parse()?;
/// assert!(s.matches("orders.42"));
/// assert!(!s.matches("orders"));
/// assert!("*".parse::<RoomSelector>()?.matches("anything"));
/// assert!("a*b".parse::<RoomSelector>().is_err());
/// # Ok::<(), ssehub::SelectorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomSelector {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Kind {
    Exact(String),
    Prefix(String),
    Any,
}

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid room selector {selector:?}: {why}")]
pub struct SelectorError {
    selector: String,
    why: &'static str,
}

impl RoomSelector {
    /// Every room.
    pub fn any() -> RoomSelector {
        RoomSelector { kind: Kind::Any }
    }

    /// Whether `room` is selected.
    pub fn matches(&self, room: &str) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Exact(name) => name == room,
            Kind::Prefix(prefix) => room.starts_with(prefix.as_str()),
        }
    }
}

impl FromStr for RoomSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = |why| SelectorError {
            selector: s.to_owned(),
            why,
        };
        if s.is_empty() {
            return Err(refuse("it is empty"));
        }
        if s.chars().any(char::is_control) {
            return Err(refuse("it contains a control character"));
        }
        let kind = match s.find('*') {
            None => Kind::Exact(s.to_owned()),
            Some(_) if s == "*" => Kind::Any,
            Some(at) if at == s.len() - 1 => Kind::Prefix(s[..at].to_owned()),
            Some(_) => return Err(refuse("`*` may only end it (`orders.*`) or stand alone")),
        };
        Ok(RoomSelector { kind })
    }
}

impl fmt::Display for RoomSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Any => f.write_str("*"),
            Kind::Exact(name) => f.write_str(name),
            Kind::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_nothing_else() {
        let exact: RoomSelector = "news".parse().unwrap();
        assert!(exact.matches("news") && !exact.matches("news2") && !exact.matches("new"));
        let prefix: RoomSelector = "orders.*".parse().unwrap();
        assert!(prefix.matches("orders.") && prefix.matches("orders.1.2"));
        assert!(!prefix.matches("orders") && !prefix.matches("xorders.1"));
        assert!(RoomSelector::any().matches(""));
        for bad in ["", "*a", "a*b", "**", "a\n"] {
            assert!(bad.parse::<RoomSelector>().is_err(), "{bad:?}");
        }
        for s in ["news", "orders.*", "*"] {
            assert_eq!(s.parse::<RoomSelector>().unwrap().to_string(), s);
        }
    }
}
