//! A small RFC 6570 expander, written from the RFC's section 3 and appendix A, for the
//! tests only: what a template expands to is what its matcher must accept. It trusts
//! its templates (the tests write them) and does not check their syntax.

use std::collections::HashMap;

/// A defined variable's value. An undefined variable is one absent from [`Vars`].
#[derive(Debug, Clone)]
pub(super) enum Value {
    Str(String),
    List(Vec<String>),
    Assoc(Vec<(String, String)>),
}

pub(super) type Vars = HashMap<String, Value>;

/// `template` expanded with `vars`.
pub(super) fn expand(template: &str, vars: &Vars) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').expect("a closed expression");
        expand_expression(&rest[open + 1..close], vars, &mut out);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Appendix A's table, for one operator: (first, sep, named, ifemp, allow reserved).
fn operator(op: Option<char>) -> (&'static str, &'static str, bool, &'static str, bool) {
    match op {
        None => ("", ",", false, "", false),
        Some('+') => ("", ",", false, "", true),
        Some('#') => ("#", ",", false, "", true),
        Some('.') => (".", ".", false, "", false),
        Some('/') => ("/", "/", false, "", false),
        Some(';') => (";", ";", true, "", false),
        Some('?') => ("?", "&", true, "=", false),
        Some('&') => ("&", "&", true, "=", false),
        Some(other) => panic!("no operator {other:?}"),
    }
}

fn expand_expression(body: &str, vars: &Vars, out: &mut String) {
    let op = body.chars().next().filter(|c| "+#./;?&".contains(*c));
    let list = &body[op.map_or(0, char::len_utf8)..];
    let (first, sep, named, ifemp, reserved) = operator(op);
    let mut started = false;
    for spec in list.split(',') {
        let (name, explode, prefix) = if let Some(name) = spec.strip_suffix('*') {
            (name, true, None)
        } else if let Some((name, n)) = spec.split_once(':') {
            (
                name,
                false,
                Some(n.parse::<usize>().expect("a prefix length")),
            )
        } else {
            (spec, false, None)
        };
        let value = match vars.get(name) {
            None => continue,
            // Empty lists and associative arrays are undefined (section 2.3).
            Some(Value::List(l)) if l.is_empty() => continue,
            Some(Value::Assoc(a)) if a.is_empty() => continue,
            Some(value) => value,
        };
        out.push_str(if started { sep } else { first });
        started = true;
        let enc = |s: &str| encode(s, reserved);
        // `name` then ifemp or `=value`, for named operators.
        let named_value = |key: &str, v: &str, out: &mut String| {
            out.push_str(key);
            if v.is_empty() {
                out.push_str(ifemp);
            } else {
                out.push('=');
                out.push_str(&enc(v));
            }
        };
        match value {
            Value::Str(s) => {
                let s: String = match prefix {
                    Some(n) => s.chars().take(n).collect(),
                    None => s.clone(),
                };
                if named {
                    named_value(name, &s, out);
                } else {
                    out.push_str(&enc(&s));
                }
            }
            Value::List(_) | Value::Assoc(_) if prefix.is_some() => {
                panic!("prefix modifiers do not apply to composite values (section 2.4.1)")
            }
            Value::List(members) if !explode => {
                if named {
                    out.push_str(name);
                    out.push('=');
                }
                let encoded: Vec<String> = members.iter().map(|m| enc(m)).collect();
                out.push_str(&encoded.join(","));
            }
            Value::Assoc(pairs) if !explode => {
                if named {
                    out.push_str(name);
                    out.push('=');
                }
                let encoded: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{},{}", enc(k), enc(v)))
                    .collect();
                out.push_str(&encoded.join(","));
            }
            Value::List(members) => {
                for (i, m) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(sep);
                    }
                    if named {
                        named_value(name, m, out);
                    } else {
                        out.push_str(&enc(m));
                    }
                }
            }
            Value::Assoc(pairs) => {
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(sep);
                    }
                    if named {
                        named_value(&enc(k), v, out);
                    } else {
                        out.push_str(&format!("{}={}", enc(k), enc(v)));
                    }
                }
            }
        }
    }
}

/// Section 3.2.1: unreserved characters as they are (and reserved ones, and a value's
/// own pct-encoded triplets, for `+` and `#`); anything else as the pct-encoded octets
/// of its UTF-8 form, in upper case.
fn encode(s: &str, reserved: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = s[i..].chars().next().expect("inside the string");
        let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
        let unreserved = c.is_ascii_alphanumeric() || "-._~".contains(c);
        if unreserved || (reserved && ":/?#[]@!$&'()*+,;=".contains(c)) {
            out.push(c);
        } else if reserved && c == '%' && hex(i + 1) && hex(i + 2) {
            out.push_str(&s[i..i + 3]);
            i += 3;
            continue;
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        i += c.len_utf8();
    }
    out
}
