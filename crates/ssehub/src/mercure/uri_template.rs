//! RFC 6570 URI templates as topic selectors: parse a template, compile it to one
//! regular expression, and tell whether a topic is one of its expansions.
//!
//! Mercure 0.x lets a subscriber select topics with a URI template such as
//! `https://example.com/books/{id}`: a topic matches when some values of the template's
//! variables expand the template to exactly that topic. Template libraries expand
//! templates; none matches them, hence this module. Each expression becomes a regular
//! expression for the set of strings it can expand to, each literal part matches itself,
//! and the whole is anchored at both ends. The `regex` crate matches in time linear in
//! the topic's length whatever the pattern (no backtracking), so no template a
//! subscriber sends can make matching a publication slow; [`MAX_COMPILED_BYTES`] bounds
//! the pattern's size, so none can make it big either.
//!
//! # Syntax
//!
//! RFC 6570 section 2, all of level 4: the operators `+ # . / ; ? &` (and none, the simple
//! expansion), several variables per expression (`{x,y}`), the explode modifier
//! (`{list*}`) and the prefix modifier (`{var:3}`, 1 to 9999). A variable name is
//! ALPHA, DIGIT, `_` and pct-encoded triplets, with single `.`s between them. The
//! operators RFC 6570 reserves for extensions (`= , ! @ |`) are refused.
//!
//! Literal parts are more lenient than the RFC's `literals` rule: any character but a
//! brace is accepted and matched as it is written (case included, nothing normalized,
//! nothing pct-decoded). They are compared with a topic character for character, so a
//! character the RFC would refuse (a space, `<`, `%` alone) costs nothing, and Mercure's
//! topics are not always URIs. RFC 6570 has no way to write a literal `{` or `}`:
//! [`UriTemplate::is_template`] says why that is no loss.
//!
//! # What an expression matches
//!
//! What RFC 6570 section 3 (and the algorithm of its appendix A) can expand the
//! expression to, for some values of its variables. A variable may be undefined (it
//! then expands to nothing, with no separator: `{?q}` may be absent altogether), a
//! string, a list or an associative array:
//!
//! - value characters: unreserved (`A-Z a-z 0-9 - . _ ~`) and pct-encoded triplets
//!   (either case of hexadecimal digit) for every operator; for `+` and `#`, the reserved
//!   characters (`: / ? # [ ] @ ! $ & ' ( ) * + , ; =`) too. So a simple `{id}` never
//!   matches a `/`, a `?` or a `#`, and `https://example.com/books/{id}` matches
//!   `https://example.com/books/1` but not `https://example.com/books/1/reviews`;
//! - the expression's first defined variable is preceded by the operator's prefix
//!   (nothing, `#`, `.`, `/`, `;`, `?` or `&`), the others by its separator (`,`, `.`,
//!   `/`, `;` or `&`), in the template's order, any of them possibly absent;
//! - for `;`, `?` and `&` a string is `name=value`, an empty string `name` (`;`) or
//!   `name=` (`?`, `&`); unexploded lists and associative arrays are comma-separated
//!   after `name=`; exploded ones repeat the name, or an associative array's keys (any
//!   key: `{?params*}` matches any query of `key=value` pairs), with the separator between them;
//! - for the other operators an exploded list joins its members with the separator, an
//!   exploded associative array its `key=value` pairs.
//!
//! # Approximations
//!
//! Matching is exact but for these:
//!
//! - (Errs towards matching, a little.) A prefix modifier counts the value's characters
//!   after encoding: an unreserved or reserved character is one, and so is a
//!   pct-encoded triplet possibly followed by up to three triplets of UTF-8 continuation
//!   bytes (`%C3%A9`, one `é`). That is the RFC's count of Unicode characters for every
//!   value an expander can encode, and it also lets `+` and `#` keep a value's own
//!   triplets whole, as the RFC asks (section 2.4.1). Bytes are not checked to be valid
//!   UTF-8 beyond that shape.
//! - (Errs towards matching.) A prefix longer than [`MAX_COUNTED_PREFIX`] matches as if
//!   there were none: counting characters costs the pattern a copy of a character's
//!   pattern per character, and so long a prefix is a bound no value in a topic meets in
//!   practice.
//! - (Errs towards matching.) Pct-encoded triplets are not checked to be the ones an
//!   expander would write: `%41` matches where an expander writes `A`, and `%2F` where it
//!   writes `/` (for `+`).
//! - (Errs towards not matching, as the RFC does.) A prefix applies to a string only
//!   (RFC 6570 section 2.4.1), so `{var:3}` matches no list or associative array, where
//!   some expanders would expand one whole.

use regex::RegexBuilder;

/// The longest template accepted, in bytes. Mercure sends selectors in URLs and tokens,
/// where no honest one comes near; the cap bounds the work a hostile one causes before
/// [`MAX_COMPILED_BYTES`] is even checked.
pub(crate) const MAX_TEMPLATE_LEN: usize = 4096;

/// The most expressions a template may have.
pub(crate) const MAX_EXPRESSIONS: usize = 64;

/// The most variables a template may have, in all its expressions together. An
/// expression's pattern nests one group per variable, so this also keeps far from the
/// `regex` crate's limit on nesting.
pub(crate) const MAX_VARIABLES: usize = 64;

/// The longest prefix modifier (`{var:64}`) counted exactly; a longer one matches as no
/// prefix (see the module's approximations).
pub(crate) const MAX_COUNTED_PREFIX: u16 = 64;

/// The most memory a template's compiled pattern may take, in bytes (the `regex`
/// crate's `size_limit`). Matching time grows with the pattern too, so this bounds both.
/// A simple expression takes about 1.2 KiB, an exploded one about 2 KiB, so that
/// [`MAX_EXPRESSIONS`] of them fit; counting a prefix of [`MAX_COUNTED_PREFIX`]
/// characters takes about 80 KiB, so that about a dozen do.
pub(crate) const MAX_COMPILED_BYTES: usize = 1 << 20;

/// A URI template (RFC 6570, level 4), compiled to match the topics it can expand to.
#[derive(Debug, Clone)]
pub(crate) struct UriTemplate {
    source: String,
    regex: regex::Regex,
}

/// Why a template was refused. Byte offsets count from the template's start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateError {
    /// Longer than [`MAX_TEMPLATE_LEN`].
    #[error("the URI template is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// The template's length.
        len: usize,
        /// [`MAX_TEMPLATE_LEN`].
        max: usize,
    },
    /// More than [`MAX_EXPRESSIONS`] expressions.
    #[error(
        "the URI template has more than {max} expressions (the one at byte {at} is one too many)"
    )]
    TooManyExpressions {
        /// Where the first expression over the cap starts.
        at: usize,
        /// [`MAX_EXPRESSIONS`].
        max: usize,
    },
    /// More than [`MAX_VARIABLES`] variables.
    #[error(
        "the URI template has more than {max} variables (the expression at byte {at} goes over)"
    )]
    TooManyVariables {
        /// Where the expression that goes over the cap starts.
        at: usize,
        /// [`MAX_VARIABLES`].
        max: usize,
    },
    /// A `{` with no `}` before the next `{` or the end.
    #[error("unclosed `{{` at byte {at}")]
    Unclosed {
        /// Where the `{` is.
        at: usize,
    },
    /// A `}` outside any expression.
    #[error("stray `}}` at byte {at}: no `{{` opened it")]
    StrayClose {
        /// Where the `}` is.
        at: usize,
    },
    /// `{}`, or an operator with no variable (`{+}`).
    #[error("empty expression at byte {at}: an expression needs at least one variable")]
    EmptyExpression {
        /// Where the expression's `{` is.
        at: usize,
    },
    /// An operator RFC 6570 reserves for future extensions.
    #[error("operator `{op}` at byte {at} is reserved by RFC 6570 for future extensions")]
    ReservedOperator {
        /// The operator.
        op: char,
        /// Where it is.
        at: usize,
    },
    /// A variable name outside RFC 6570's `varname` grammar.
    #[error("bad variable name {name:?}: {why} at byte {at} (a name is ALPHA, DIGIT, `_` and pct-encoded triplets, with single `.`s between them)")]
    BadVariableName {
        /// The name as written.
        name: String,
        /// What is wrong.
        why: &'static str,
        /// Where.
        at: usize,
    },
    /// A prefix modifier that is not `:` and a number from 1 to 9999.
    #[error("bad prefix modifier `:{found}` at byte {at}: expected `:` followed by 1 to 4 digits, from 1 to 9999")]
    BadPrefix {
        /// What follows the `:`.
        found: String,
        /// Where the `:` is.
        at: usize,
    },
    /// An explode modifier followed by more than the end of its variable.
    #[error("explode modifier `*` at byte {at} must end its variable (`{{list*}}`)")]
    BadExplode {
        /// Where the `*` is.
        at: usize,
    },
    /// The compiled pattern would exceed [`MAX_COMPILED_BYTES`].
    #[error("the URI template is too complex: its matcher would take more than {max} bytes")]
    TooComplex {
        /// [`MAX_COMPILED_BYTES`].
        max: usize,
    },
}

impl UriTemplate {
    /// Parse and compile `template`.
    pub(crate) fn parse(template: &str) -> Result<UriTemplate, TemplateError> {
        if template.len() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong {
                len: template.len(),
                max: MAX_TEMPLATE_LEN,
            });
        }
        let parts = parse_parts(template)?;
        let regex = RegexBuilder::new(&pattern(&parts))
            .size_limit(MAX_COMPILED_BYTES)
            .build()
            // The pattern is built here and always well-formed, so the only failure is
            // its size (or, behind the caps above, unreachable, its nesting).
            .map_err(|_| TemplateError::TooComplex {
                max: MAX_COMPILED_BYTES,
            })?;
        Ok(UriTemplate {
            source: template.to_owned(),
            regex,
        })
    }

    /// Whether some values of the template's variables expand it to exactly `topic`.
    /// Takes time linear in `topic`'s length, times at most the pattern's size (which
    /// [`MAX_COMPILED_BYTES`] bounds); never backtracks.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }

    /// Whether a selector is to be read as a template: it has a `{`. One without is an
    /// exact topic, compared as a string.
    ///
    /// RFC 6570 has no escape for a literal brace, and no expansion produces one (a
    /// brace is neither unreserved nor reserved), so no template matches a topic that
    /// contains a brace. Callers compare a selector with the topic for equality first
    /// (Mercure's exact match) and only then read it as a template, so such a topic is
    /// still selected by its own spelling; a selector with a `{` that does not parse can
    /// then select only that way.
    pub(crate) fn is_template(selector: &str) -> bool {
        selector.contains('{')
    }

    /// The template as it was written.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }
}

/// A template, parsed: literal parts and expressions, in order.
#[derive(Debug)]
enum Part<'a> {
    Literal(&'a str),
    Expression(Expression<'a>),
}

#[derive(Debug)]
struct Expression<'a> {
    operator: Operator,
    variables: Vec<VarSpec<'a>>,
}

#[derive(Debug)]
struct VarSpec<'a> {
    name: &'a str,
    modifier: Modifier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    None,
    /// `:n`, 1 to 9999.
    Prefix(u16),
    /// `*`.
    Explode,
}

/// An expression's operator: RFC 6570 section 3.2.1 and the table of appendix A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Simple,
    Reserved,
    Fragment,
    Label,
    PathSegment,
    PathParameter,
    Query,
    QueryContinuation,
}

/// How an operator names its values (appendix A's `named` and `ifemp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// Values alone.
    Unnamed,
    /// `name=value`, and `name` alone for an empty value (`;`).
    Bare,
    /// `name=value`, and `name=` for an empty value (`?`, `&`).
    Equals,
}

impl Operator {
    fn from_byte(b: u8) -> Option<Operator> {
        Some(match b {
            b'+' => Operator::Reserved,
            b'#' => Operator::Fragment,
            b'.' => Operator::Label,
            b'/' => Operator::PathSegment,
            b';' => Operator::PathParameter,
            b'?' => Operator::Query,
            b'&' => Operator::QueryContinuation,
            _ => return None,
        })
    }

    /// What precedes the expression's first defined variable.
    fn first(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved => "",
            Operator::Fragment => "#",
            Operator::Label => ".",
            Operator::PathSegment => "/",
            Operator::PathParameter => ";",
            Operator::Query => "?",
            Operator::QueryContinuation => "&",
        }
    }

    /// What precedes each of the others, and separates an exploded value's members.
    fn separator(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved | Operator::Fragment => ",",
            Operator::Label => ".",
            Operator::PathSegment => "/",
            Operator::PathParameter => ";",
            Operator::Query | Operator::QueryContinuation => "&",
        }
    }

    fn naming(self) -> Naming {
        match self {
            Operator::PathParameter => Naming::Bare,
            Operator::Query | Operator::QueryContinuation => Naming::Equals,
            _ => Naming::Unnamed,
        }
    }

    /// The characters a value may keep as they are (appendix A's `allow`), as a regex
    /// class: unreserved, and reserved too for `+` and `#`. `-`, `~` and `&` are escaped
    /// because the `regex` crate gives them meanings in classes (`--`, `~~`, `&&`).
    fn kept(self) -> &'static str {
        match self {
            Operator::Reserved | Operator::Fragment => r"[A-Za-z0-9\-._\~:/?#\[\]@!$\&'()*+,;=]",
            _ => r"[A-Za-z0-9\-._\~]",
        }
    }
}

/// One pct-encoded triplet.
const TRIPLET: &str = "%[0-9A-Fa-f]{2}";

/// One character, pct-encoded: a triplet, then up to three of UTF-8 continuation bytes.
/// Counted as one character by prefix modifiers.
const ENCODED_CHAR: &str = "%[0-9A-Fa-f]{2}(?:%[89ABab][0-9A-Fa-f]){0,3}";

fn parse_parts(template: &str) -> Result<Vec<Part<'_>>, TemplateError> {
    let bytes = template.as_bytes();
    let mut parts = Vec::new();
    let (mut expressions, mut variables) = (0, 0);
    let mut literal_start = 0;
    let mut i = 0;
    // Braces are ASCII, so they never sit inside a multi-byte character: scanning bytes
    // and slicing at them is safe.
    while i < bytes.len() {
        match bytes[i] {
            b'}' => return Err(TemplateError::StrayClose { at: i }),
            b'{' => {
                if literal_start < i {
                    parts.push(Part::Literal(&template[literal_start..i]));
                }
                let close = match bytes[i + 1..].iter().position(|&b| b == b'{' || b == b'}') {
                    Some(n) if bytes[i + 1 + n] == b'}' => i + 1 + n,
                    _ => return Err(TemplateError::Unclosed { at: i }),
                };
                expressions += 1;
                if expressions > MAX_EXPRESSIONS {
                    return Err(TemplateError::TooManyExpressions {
                        at: i,
                        max: MAX_EXPRESSIONS,
                    });
                }
                let expression = parse_expression(template, i, close)?;
                variables += expression.variables.len();
                if variables > MAX_VARIABLES {
                    return Err(TemplateError::TooManyVariables {
                        at: i,
                        max: MAX_VARIABLES,
                    });
                }
                parts.push(Part::Expression(expression));
                i = close + 1;
                literal_start = i;
            }
            _ => i += 1,
        }
    }
    if literal_start < bytes.len() {
        parts.push(Part::Literal(&template[literal_start..]));
    }
    Ok(parts)
}

/// The expression between the `{` at `open` and the `}` at `close`.
fn parse_expression(
    template: &str,
    open: usize,
    close: usize,
) -> Result<Expression<'_>, TemplateError> {
    let bytes = template.as_bytes();
    let mut start = open + 1;
    let operator = match bytes.get(start) {
        Some(&b @ (b'=' | b',' | b'!' | b'@' | b'|')) => {
            return Err(TemplateError::ReservedOperator {
                op: char::from(b),
                at: start,
            })
        }
        Some(&b) if start < close => match Operator::from_byte(b) {
            Some(op) => {
                start += 1;
                op
            }
            None => Operator::Simple,
        },
        _ => Operator::Simple,
    };
    if start == close {
        return Err(TemplateError::EmptyExpression { at: open });
    }
    let mut variables = Vec::new();
    let mut from = start;
    for spec in template[start..close].split(',') {
        variables.push(parse_varspec(template, from, from + spec.len())?);
        from += spec.len() + 1;
    }
    Ok(Expression {
        operator,
        variables,
    })
}

/// The varspec at `start..end`: a name, then `*`, `:n` or nothing.
fn parse_varspec(template: &str, start: usize, end: usize) -> Result<VarSpec<'_>, TemplateError> {
    let spec = &template[start..end];
    let name_len = spec.find([':', '*']).unwrap_or(spec.len());
    let name = &spec[..name_len];
    check_varname(name, start)?;
    let modifier = match spec.as_bytes().get(name_len) {
        None => Modifier::None,
        Some(b'*') if name_len + 1 == spec.len() => Modifier::Explode,
        Some(b'*') => {
            return Err(TemplateError::BadExplode {
                at: start + name_len,
            })
        }
        Some(_) => {
            let digits = &spec[name_len + 1..];
            let ok = (1..=4).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0');
            match digits.parse::<u16>() {
                Ok(n) if ok => Modifier::Prefix(n),
                _ => {
                    return Err(TemplateError::BadPrefix {
                        found: digits.to_owned(),
                        at: start + name_len,
                    })
                }
            }
        }
    };
    Ok(VarSpec { name, modifier })
}

/// RFC 6570's `varname`: `varchar *( ["."] varchar )`, `varchar` being ALPHA, DIGIT,
/// `_` or a pct-encoded triplet. `start` is the name's offset in the template.
fn check_varname(name: &str, start: usize) -> Result<(), TemplateError> {
    let bad = |why, at| TemplateError::BadVariableName {
        name: name.to_owned(),
        why,
        at: start + at,
    };
    if name.is_empty() {
        return Err(bad("it is empty", 0));
    }
    let bytes = name.as_bytes();
    // Whether the last thing seen may be followed by a `.`: a varchar, not a `.` or
    // the start.
    let mut after_varchar = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b if b.is_ascii_alphanumeric() || b == b'_' => i += 1,
            b'%' => {
                let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return Err(bad("`%` is not followed by two hexadecimal digits", i));
                }
                i += 3;
            }
            b'.' if after_varchar => {
                after_varchar = false;
                i += 1;
                continue;
            }
            b'.' => return Err(bad("a `.` must stand between two characters", i)),
            _ => return Err(bad("this character is not allowed", i)),
        }
        after_varchar = true;
    }
    if !after_varchar {
        return Err(bad(
            "a `.` must stand between two characters",
            bytes.len() - 1,
        ));
    }
    Ok(())
}

/// The whole template's pattern: its parts in order, anchored at both ends.
fn pattern(parts: &[Part<'_>]) -> String {
    let mut pattern = String::from(r"\A(?:");
    for part in parts {
        match part {
            Part::Literal(text) => pattern.push_str(&regex::escape(text)),
            Part::Expression(expression) => pattern.push_str(&expression_pattern(expression)),
        }
    }
    pattern.push_str(r")\z");
    pattern
}

/// What an expression can expand to: nothing (every variable undefined), or the
/// operator's prefix and the defined variables' expansions, joined by its separator.
fn expression_pattern(expression: &Expression<'_>) -> String {
    let op = expression.operator;
    let separator = regex::escape(op.separator());
    let items: Vec<String> = expression
        .variables
        .iter()
        .map(|spec| varspec_pattern(op, spec))
        .collect();
    // Any non-empty subsequence of the items, in order, joined by the separator. Built
    // from the last: the items from k on are "item k, a separator, and the items from
    // k+1 on", or "the items from k+1 on" (both: item k may come first or be undefined),
    // or "item k alone". Each item appears twice, so the pattern stays linear in the
    // number of variables (writing out every subsequence would not).
    let mut items = items.iter().rev();
    let last = items
        .next()
        .expect("an expression has at least one variable");
    let mut tail = format!("(?:{last})");
    for item in items {
        tail = format!("(?:(?:(?:{item}){separator})?{tail}|(?:{item}))");
    }
    format!("(?:{}{tail})?", regex::escape(op.first()))
}

/// What one defined variable can expand to, without the prefix or separator before it.
fn varspec_pattern(op: Operator, spec: &VarSpec<'_>) -> String {
    let kept = op.kept();
    let value = format!("(?:{kept}|{TRIPLET})*");
    let nonempty = format!("(?:{kept}|{TRIPLET})+");
    let name = regex::escape(spec.name);
    match spec.modifier {
        // A string only (a prefix does not apply to lists and associative arrays).
        Modifier::Prefix(n) => {
            let (value, nonempty) = if n <= MAX_COUNTED_PREFIX {
                let char = format!("(?:{kept}|{ENCODED_CHAR})");
                (format!("{char}{{0,{n}}}"), format!("{char}{{1,{n}}}"))
            } else {
                (value, nonempty)
            };
            match op.naming() {
                Naming::Unnamed => value,
                Naming::Bare => format!("{name}(?:={nonempty})?"),
                Naming::Equals => format!("{name}={value}"),
            }
        }
        // A string, or a list's members or an associative array's keys and values in
        // turn, joined by commas. The string is the one-member list, so one pattern.
        Modifier::None => {
            let list = format!("{value}(?:,{value})*");
            match op.naming() {
                Naming::Unnamed => list,
                // An empty string is `name` alone; a list is never empty (an empty list
                // is undefined), but its members may be.
                Naming::Bare => format!("{name}(?:={list})?"),
                Naming::Equals => format!("{name}={list}"),
            }
        }
        Modifier::Explode => {
            let sep = regex::escape(op.separator());
            match op.naming() {
                // A string (one member), a list's members, or an associative array's
                // `key=value` pairs, joined by the separator.
                Naming::Unnamed => {
                    let pair = format!("{value}={value}");
                    format!("{value}(?:{sep}{value})*|{pair}(?:{sep}{pair})*")
                }
                // Each member named after the variable, or each pair named after its
                // key: any name, so the variable's own name does not constrain them.
                Naming::Bare => {
                    let pair = format!("{value}(?:={nonempty})?");
                    format!("{pair}(?:{sep}{pair})*")
                }
                Naming::Equals => {
                    let pair = format!("{value}={value}");
                    format!("{pair}(?:{sep}{pair})*")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
