//! Unit and property tests of the URI-template matcher: RFC 6570's own examples, topics
//! that must not match, parse errors and caps, expansions of random templates with a
//! small expander written from the RFC, and the time matching takes on a long topic.

mod expand;

use proptest::prelude::*;

use self::expand::{expand, Value, Vars};
use super::*;

fn template(t: &str) -> UriTemplate {
    UriTemplate::parse(t).unwrap_or_else(|e| panic!("{t:?}: {e}"))
}

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

fn list(members: &[&str]) -> Value {
    Value::List(members.iter().map(|m| m.to_string()).collect())
}

fn assoc(pairs: &[(&str, &str)]) -> Value {
    Value::Assoc(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The variables of RFC 6570 section 3.2 (`undef` and `bar` are left undefined).
fn rfc_vars() -> Vars {
    [
        ("count", list(&["one", "two", "three"])),
        ("dom", list(&["example", "com"])),
        ("dub", s("me/too")),
        ("hello", s("Hello World!")),
        ("half", s("50%")),
        ("var", s("value")),
        ("who", s("fred")),
        ("base", s("http://example.com/home/")),
        ("path", s("/foo/bar")),
        ("list", list(&["red", "green", "blue"])),
        (
            "keys",
            assoc(&[("semi", ";"), ("dot", "."), ("comma", ",")]),
        ),
        ("v", s("6")),
        ("x", s("1024")),
        ("y", s("768")),
        ("empty", s("")),
        ("empty_keys", assoc(&[])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// RFC 6570 section 3.2's examples, one operator at a time: each template with what it
/// expands to under [`rfc_vars`], worked out from the RFC's rules.
const RFC_EXAMPLES: &[(&str, &str)] = &[
    // 3.2.1, variable expansion: one list, every way.
    ("{count}", "one,two,three"),
    ("{count*}", "one,two,three"),
    ("{/count}", "/one,two,three"),
    ("{/count*}", "/one/two/three"),
    ("{;count}", ";count=one,two,three"),
    ("{;count*}", ";count=one;count=two;count=three"),
    ("{?count}", "?count=one,two,three"),
    ("{?count*}", "?count=one&count=two&count=three"),
    ("{&count*}", "&count=one&count=two&count=three"),
    // 3.2.2, simple string expansion.
    ("{var}", "value"),
    ("{hello}", "Hello%20World%21"),
    ("{half}", "50%25"),
    ("O{empty}X", "OX"),
    ("O{undef}X", "OX"),
    ("{x,y}", "1024,768"),
    ("{x,hello,y}", "1024,Hello%20World%21,768"),
    ("?{x,empty}", "?1024,"),
    ("?{x,undef}", "?1024"),
    ("?{undef,y}", "?768"),
    ("{var:3}", "val"),
    ("{var:30}", "value"),
    ("{list}", "red,green,blue"),
    ("{list*}", "red,green,blue"),
    ("{keys}", "semi,%3B,dot,.,comma,%2C"),
    ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
    // 3.2.3, reserved expansion.
    ("{+var}", "value"),
    ("{+hello}", "Hello%20World!"),
    ("{+half}", "50%25"),
    ("{base}index", "http%3A%2F%2Fexample.com%2Fhome%2Findex"),
    ("{+base}index", "http://example.com/home/index"),
    ("O{+empty}X", "OX"),
    ("O{+undef}X", "OX"),
    ("{+path}/here", "/foo/bar/here"),
    ("here?ref={+path}", "here?ref=/foo/bar"),
    ("up{+path}{var}/here", "up/foo/barvalue/here"),
    ("{+x,hello,y}", "1024,Hello%20World!,768"),
    ("{+path,x}/here", "/foo/bar,1024/here"),
    ("{+path:6}/here", "/foo/b/here"),
    ("{+list}", "red,green,blue"),
    ("{+list*}", "red,green,blue"),
    ("{+keys}", "semi,;,dot,.,comma,,"),
    ("{+keys*}", "semi=;,dot=.,comma=,"),
    // 3.2.4, fragment expansion.
    ("{#var}", "#value"),
    ("{#hello}", "#Hello%20World!"),
    ("{#half}", "#50%25"),
    ("foo{#empty}", "foo#"),
    ("foo{#undef}", "foo"),
    ("{#x,hello,y}", "#1024,Hello%20World!,768"),
    ("{#path,x}/here", "#/foo/bar,1024/here"),
    ("{#path:6}/here", "#/foo/b/here"),
    ("{#list}", "#red,green,blue"),
    ("{#list*}", "#red,green,blue"),
    ("{#keys}", "#semi,;,dot,.,comma,,"),
    ("{#keys*}", "#semi=;,dot=.,comma=,"),
    // 3.2.5, label expansion.
    ("{.who}", ".fred"),
    ("{.who,who}", ".fred.fred"),
    ("{.half,who}", ".50%25.fred"),
    ("www{.dom*}", "www.example.com"),
    ("X{.var}", "X.value"),
    ("X{.empty}", "X."),
    ("X{.undef}", "X"),
    ("X{.var:3}", "X.val"),
    ("X{.list}", "X.red,green,blue"),
    ("X{.list*}", "X.red.green.blue"),
    ("X{.keys}", "X.semi,%3B,dot,.,comma,%2C"),
    ("X{.keys*}", "X.semi=%3B.dot=..comma=%2C"),
    ("X{.empty_keys}", "X"),
    ("X{.empty_keys*}", "X"),
    // 3.2.6, path segment expansion.
    ("{/who}", "/fred"),
    ("{/who,who}", "/fred/fred"),
    ("{/half,who}", "/50%25/fred"),
    ("{/who,dub}", "/fred/me%2Ftoo"),
    ("{/var}", "/value"),
    ("{/var,empty}", "/value/"),
    ("{/var,undef}", "/value"),
    ("{/var,x}/here", "/value/1024/here"),
    ("{/var:1,var}", "/v/value"),
    ("{/list}", "/red,green,blue"),
    ("{/list*}", "/red/green/blue"),
    ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
    ("{/keys}", "/semi,%3B,dot,.,comma,%2C"),
    ("{/keys*}", "/semi=%3B/dot=./comma=%2C"),
    // 3.2.7, path-style parameter expansion.
    ("{;who}", ";who=fred"),
    ("{;half}", ";half=50%25"),
    ("{;empty}", ";empty"),
    ("{;v,empty,who}", ";v=6;empty;who=fred"),
    ("{;v,bar,who}", ";v=6;who=fred"),
    ("{;x,y}", ";x=1024;y=768"),
    ("{;x,y,empty}", ";x=1024;y=768;empty"),
    ("{;x,y,undef}", ";x=1024;y=768"),
    ("{;hello:5}", ";hello=Hello"),
    ("{;list}", ";list=red,green,blue"),
    ("{;list*}", ";list=red;list=green;list=blue"),
    ("{;keys}", ";keys=semi,%3B,dot,.,comma,%2C"),
    ("{;keys*}", ";semi=%3B;dot=.;comma=%2C"),
    // 3.2.8, form-style query expansion.
    ("{?who}", "?who=fred"),
    ("{?half}", "?half=50%25"),
    ("{?x,y}", "?x=1024&y=768"),
    ("{?x,y,empty}", "?x=1024&y=768&empty="),
    ("{?x,y,undef}", "?x=1024&y=768"),
    ("{?var:3}", "?var=val"),
    ("{?list}", "?list=red,green,blue"),
    ("{?list*}", "?list=red&list=green&list=blue"),
    ("{?keys}", "?keys=semi,%3B,dot,.,comma,%2C"),
    ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"),
    // 3.2.9, form-style query continuation.
    ("{&who}", "&who=fred"),
    ("{&half}", "&half=50%25"),
    ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
    ("{&x,y,empty}", "&x=1024&y=768&empty="),
    ("{&var:3}", "&var=val"),
    ("{&list}", "&list=red,green,blue"),
    ("{&list*}", "&list=red&list=green&list=blue"),
    ("{&keys}", "&keys=semi,%3B,dot,.,comma,%2C"),
    ("{&keys*}", "&semi=%3B&dot=.&comma=%2C"),
];

#[test]
fn every_rfc_example_expansion_matches_its_template() {
    let vars = rfc_vars();
    for &(t, expected) in RFC_EXAMPLES {
        // The expander the property tests trust agrees with the RFC's examples...
        assert_eq!(expand(t, &vars), expected, "expanding {t:?}");
        // ...and the matcher accepts what the RFC says the template expands to.
        assert!(
            template(t).matches(expected),
            "{t:?} should match {expected:?}"
        );
    }
}

#[test]
fn a_simple_variable_is_one_path_segment() {
    let books = template("https://example.com/books/{id}");
    assert!(books.matches("https://example.com/books/1"));
    assert!(books.matches("https://example.com/books/war-and-peace_1.0~x"));
    assert!(books.matches("https://example.com/books/caf%C3%A9"));
    // An undefined (or empty) id expands to nothing.
    assert!(books.matches("https://example.com/books/"));
    for topic in [
        "https://example.com/books/1/reviews",
        "https://example.com/books/1/",
        "https://example.com/books/1?page=2",
        "https://example.com/books/1#top",
        "https://example.com/books/a b",
        "https://example.com/books/café",
        "https://example.com/books/1%2",
        "https://example.com/books",
        "https://example.com/books/1\n",
    ] {
        assert!(!books.matches(topic), "{topic:?}");
    }
}

#[test]
fn reserved_characters_only_where_the_operator_allows_them() {
    assert!(!template("{id}").matches("1?x"));
    assert!(!template("{/id}").matches("/1?x"));
    assert!(!template("{.id}").matches(".1?x"));
    assert!(!template("{;id}").matches(";id=1?x"));
    assert!(!template("{?id}").matches("?id=1?x"));
    assert!(!template("{&id}").matches("&id=1&x"));
    assert!(template("{+id}").matches("1?x"));
    assert!(template("{#id}").matches("#1?x/y"));
    // Never a brace, a space or a raw non-ASCII character, whatever the operator.
    for op in ["", "+", "#"] {
        let t = template(&format!("{{{op}id}}"));
        let start = if op == "#" { "#" } else { "" };
        for bad in ["a{b", "a}b", "a b", "é", "a\"b", "a<b"] {
            assert!(!t.matches(&format!("{start}{bad}")), "{op} {bad:?}");
        }
    }
}

#[test]
fn path_segments_and_their_count() {
    let one = template("/books{/id}");
    assert!(one.matches("/books/1") && one.matches("/books"));
    assert!(!one.matches("/books/1/2"));
    let many = template("/books{/id*}");
    assert!(many.matches("/books/1/2/3") && many.matches("/books"));
    let two = template("/books{/id,part}");
    assert!(two.matches("/books/1/2") && two.matches("/books/1"));
    assert!(!two.matches("/books/1/2/3"));
}

#[test]
fn literals_are_literal_and_case_sensitive() {
    let t = template("https://example.com/Books/{id}");
    assert!(t.matches("https://example.com/Books/1"));
    for topic in [
        "https://example.com/books/1",
        "HTTPS://example.com/Books/1",
        "https://EXAMPLE.com/Books/1",
        "http://example.com/Books/1",
        "https://example.org/Books/1",
        "xhttps://example.com/Books/1",
        "ttps://example.com/Books/1",
    ] {
        assert!(!t.matches(topic), "{topic:?}");
    }
    // Regex metacharacters in literals are only themselves.
    let t = template("a.b(c)+[d]|e^f${x}");
    assert!(t.matches("a.b(c)+[d]|e^f$1"));
    assert!(!t.matches("aXb(c)+[d]|e^f$1") && !t.matches("a.b(cc)+[d]|e^f$1"));
    // Nothing is pct-decoded or normalized.
    assert!(!template("caf%C3%A9/{x}").matches("café/1"));
    assert!(template("café/{x}").matches("café/1"));
}

#[test]
fn query_parameters_in_order_and_by_name() {
    let q = template("/search{?q,page}");
    for ok in [
        "/search",
        "/search?q=a",
        "/search?page=2",
        "/search?q=a&page=2",
        "/search?q=",
    ] {
        assert!(q.matches(ok), "{ok:?}");
    }
    for bad in [
        "/search?page=2&q=a",
        "/search?r=1",
        "/search?q=a&r=2",
        "/search?q",
        "/search?q=a&q=b",
        "/search&q=a",
        "/search?q=a?",
    ] {
        assert!(!q.matches(bad), "{bad:?}");
    }
    // An exploded associative array names its own parameters.
    let any = template("/search{?params*}");
    assert!(any.matches("/search?r=1&s=2") && any.matches("/search"));
    assert!(!any.matches("/search?r") && !any.matches("/search?r=1&"));
    let continued = template("/search?fixed=1{&q}");
    assert!(continued.matches("/search?fixed=1&q=x") && continued.matches("/search?fixed=1"));
    assert!(!continued.matches("/search?fixed=1?q=x"));
}

#[test]
fn a_prefix_counts_characters() {
    let t = template("/{id:3}");
    for ok in [
        "/",
        "/a",
        "/abc",
        "/%C3%A9ab",
        "/%F0%9F%98%80%20x",
        "/%41%42%43",
    ] {
        assert!(t.matches(ok), "{ok:?}");
    }
    for bad in ["/abcd", "/%C3%A9abc", "/ab%20c"] {
        assert!(!t.matches(bad), "{bad:?}");
    }
    // For `;`, an empty string is the bare name, a longer one is cut.
    let t = template("{;id:2}");
    assert!(t.matches(";id") && t.matches(";id=ab") && !t.matches(";id=abc"));
    assert!(!t.matches(";id="));
    // A prefix applies to strings only: no list.
    assert!(!template("{id:3}").matches("a,b"));
    // Past MAX_COUNTED_PREFIX, any length (the documented approximation).
    let long = format!("{{id:{}}}", MAX_COUNTED_PREFIX + 1);
    assert!(template(&long).matches(&"a".repeat(1000)));
    let counted = format!("{{id:{MAX_COUNTED_PREFIX}}}");
    let limit = usize::from(MAX_COUNTED_PREFIX);
    assert!(template(&counted).matches(&"a".repeat(limit)));
    assert!(!template(&counted).matches(&"a".repeat(limit + 1)));
}

#[test]
fn labels_lists_and_pairs() {
    let host = template("www{.dom*}");
    assert!(host.matches("www.example.com") && host.matches("www"));
    assert!(!host.matches("www.example/com"));
    // An unexploded associative array is keys and values by pairs: `{;keys}` needs a
    // name, `{;keys*}` takes any.
    assert!(template("{;keys}").matches(";keys=a,1,b,2"));
    assert!(!template("{;keys}").matches(";other=a"));
    assert!(template("{;keys*}").matches(";a=1;b;c=3"));
    assert!(!template("{;keys*}").matches(";a=1;b="));
}

#[test]
fn several_expressions_and_exact_topics() {
    let t = template("https://example.com/{user}/books/{book}{?lang}");
    assert!(t.matches("https://example.com/alice/books/42?lang=fr"));
    assert!(t.matches("https://example.com/alice/books/42"));
    assert!(!t.matches("https://example.com/alice/books/42/x?lang=fr"));
    assert!(!t.matches("https://example.com/alice/bob/books/42"));
    // No expression: an exact topic, matched as a string.
    let exact = template("https://example.com/books/1");
    assert!(exact.matches("https://example.com/books/1"));
    assert!(!exact.matches("https://example.com/books/12"));
    assert!(template("").matches("") && !template("").matches("a"));
}

#[test]
fn is_template_and_as_str() {
    assert!(UriTemplate::is_template("https://example.com/{id}"));
    assert!(UriTemplate::is_template("{"));
    assert!(!UriTemplate::is_template("https://example.com/1"));
    assert!(!UriTemplate::is_template("a}b"));
    assert!(!UriTemplate::is_template("*"));
    let text = "https://example.com/{id}{?q*}";
    assert_eq!(template(text).as_str(), text);
}

#[test]
fn refused_templates_say_what_and_where() {
    use TemplateError as E;
    let bad_name = |name: &str, at| match UriTemplate::parse(&format!("/x/{{{name}}}")) {
        Err(E::BadVariableName { at: got, .. }) => assert_eq!(got, at, "{name:?}"),
        other => panic!("{name:?}: {other:?}"),
    };
    // The name starts at byte 4 of "/x/{name}".
    bad_name("a b", 5);
    bad_name("+.a", 5);
    bad_name("a.", 5);
    bad_name("a..b", 6);
    bad_name("a-b", 5);
    bad_name("a%2", 5);
    bad_name("a%zz", 5);
    bad_name("é", 4);
    bad_name("a,", 6);
    bad_name("a,,b", 6);
    bad_name(":3", 4);
    bad_name("a+b", 5);
    let cases: &[(&str, TemplateError)] = &[
        ("/x/{id", E::Unclosed { at: 3 }),
        ("/x/{id{y}", E::Unclosed { at: 3 }),
        ("{", E::Unclosed { at: 0 }),
        ("/x/id}", E::StrayClose { at: 5 }),
        ("{a}}", E::StrayClose { at: 3 }),
        ("/x/{}", E::EmptyExpression { at: 3 }),
        ("/x/{+}", E::EmptyExpression { at: 3 }),
        ("{?}", E::EmptyExpression { at: 0 }),
        ("/x/{=a}", E::ReservedOperator { op: '=', at: 4 }),
        ("{,a}", E::ReservedOperator { op: ',', at: 1 }),
        ("{!a}", E::ReservedOperator { op: '!', at: 1 }),
        ("{@a}", E::ReservedOperator { op: '@', at: 1 }),
        ("{|a}", E::ReservedOperator { op: '|', at: 1 }),
        (
            "{a:0}",
            E::BadPrefix {
                found: "0".into(),
                at: 2,
            },
        ),
        (
            "{a:}",
            E::BadPrefix {
                found: "".into(),
                at: 2,
            },
        ),
        (
            "{a:10000}",
            E::BadPrefix {
                found: "10000".into(),
                at: 2,
            },
        ),
        (
            "{a:012}",
            E::BadPrefix {
                found: "012".into(),
                at: 2,
            },
        ),
        (
            "{a:1x}",
            E::BadPrefix {
                found: "1x".into(),
                at: 2,
            },
        ),
        (
            "{a:-1}",
            E::BadPrefix {
                found: "-1".into(),
                at: 2,
            },
        ),
        (
            "{b,a:3*}",
            E::BadPrefix {
                found: "3*".into(),
                at: 4,
            },
        ),
        ("{a*b}", E::BadExplode { at: 2 }),
        ("{a*:3}", E::BadExplode { at: 2 }),
        ("{a**}", E::BadExplode { at: 2 }),
    ];
    for (t, want) in cases {
        assert_eq!(UriTemplate::parse(t).unwrap_err(), *want, "{t:?}");
    }
    // The messages name the problem and the place.
    let msg = UriTemplate::parse("/x/{a b}").unwrap_err().to_string();
    assert!(msg.contains("\"a b\"") && msg.contains("byte 5"), "{msg}");
    let msg = UriTemplate::parse("{a:0}").unwrap_err().to_string();
    assert!(msg.contains("`:0`") && msg.contains("byte 2"), "{msg}");
    assert!(template("{a:9999}").matches("abc"));
    assert!(template("{a.b_c%41.9}").matches("1"));
}

#[test]
fn the_caps() {
    let long = format!("/{}", "a".repeat(MAX_TEMPLATE_LEN));
    assert_eq!(
        UriTemplate::parse(&long).unwrap_err(),
        TemplateError::TooLong {
            len: MAX_TEMPLATE_LEN + 1,
            max: MAX_TEMPLATE_LEN
        }
    );
    assert!(UriTemplate::parse(&"a".repeat(MAX_TEMPLATE_LEN)).is_ok());

    let exprs = |n: usize, expr: &str| expr.repeat(n);
    assert!(UriTemplate::parse(&exprs(MAX_EXPRESSIONS, "{a}")).is_ok());
    assert_eq!(
        UriTemplate::parse(&exprs(MAX_EXPRESSIONS + 1, "{a}")).unwrap_err(),
        TemplateError::TooManyExpressions {
            at: 3 * MAX_EXPRESSIONS,
            max: MAX_EXPRESSIONS
        }
    );
    let vars = |n: usize| format!("{{?{}}}", vec!["a"; n].join(","));
    assert!(UriTemplate::parse(&vars(MAX_VARIABLES)).is_ok());
    assert!(matches!(
        UriTemplate::parse(&vars(MAX_VARIABLES + 1)),
        Err(TemplateError::TooManyVariables { at: 0, .. })
    ));

    // Every operator, exploded or prefixed as far as counted, in as many expressions as
    // allowed, fits the compiled size; one can't lose a template to the cap that way.
    for op in ["", "+", "#", ".", "/", ";", "?", "&"] {
        for modifier in ["", "*", ":9"] {
            let t = exprs(MAX_EXPRESSIONS, &format!("{{{op}a{modifier}}}"));
            assert!(UriTemplate::parse(&t).is_ok(), "{t}");
        }
        let t = format!("{{{op}{}}}", vec!["a*"; MAX_VARIABLES].join(","));
        assert!(UriTemplate::parse(&t).is_ok(), "{t}");
        let t = format!("{{{op}a:{MAX_COUNTED_PREFIX}}}");
        assert!(UriTemplate::parse(&t).is_ok(), "{t}");
    }
    // But many long counted prefixes are too much, and refused as such.
    let hostile = exprs(MAX_EXPRESSIONS, &format!("{{a:{MAX_COUNTED_PREFIX}}}"));
    assert_eq!(
        UriTemplate::parse(&hostile).unwrap_err(),
        TemplateError::TooComplex {
            max: MAX_COMPILED_BYTES
        }
    );
}

/// Matching a 64 KiB topic against templates of many adjacent, ambiguous expressions
/// completes. No timing is asserted: the `regex` crate matches in time linear in the
/// topic whatever the pattern (a backtracking engine would take exponential time on
/// some of these); this is the check that nothing here defeats that, and the caps keep
/// the linear factor (the pattern's size) small.
#[test]
fn pathological_templates_on_a_long_topic_complete() {
    let topic_a = "a".repeat(64 * 1024);
    let topic_path = "/a".repeat(32 * 1024);
    let topic_query = "&a=1".repeat(16 * 1024);
    let names = |n: usize| (0..n).map(|i| format!("v{i}")).collect::<Vec<_>>();
    let adjacent = |op: &str, modifier: &str| {
        names(MAX_EXPRESSIONS)
            .iter()
            .map(|n| format!("{{{op}{n}{modifier}}}"))
            .collect::<String>()
    };
    for t in [
        adjacent("", ""),
        adjacent("/", "*"),
        adjacent("+", "*"),
        adjacent("&", "*"),
        adjacent(".", ":9"),
        format!("{{{}}}", names(MAX_VARIABLES).join(",")),
        format!("{{/{}}}", names(MAX_VARIABLES).join("*,") + "*"),
    ] {
        let compiled = template(&t);
        for topic in [&topic_a, &topic_path, &topic_query] {
            compiled.matches(topic);
            // One character that no expression produces, at the very end, so that the
            // whole topic is read before the answer is known.
            assert!(!compiled.matches(&format!("{topic}\u{7f}")), "{t}");
        }
    }
    assert!(template(&adjacent("", "")).matches(&topic_a));
    assert!(template(&adjacent("/", "*")).matches(&topic_path));
}

// --- Property tests ----------------------------------------------------------------

/// A varspec for the generator: a name from a few (so that expressions share
/// variables), a modifier, and whether it may only take a string (a prefix).
#[derive(Debug, Clone)]
struct Spec {
    name: &'static str,
    modifier: String,
}

#[derive(Debug, Clone)]
enum GenPart {
    Literal(String),
    Expression(&'static str, Vec<Spec>),
}

const NAMES: &[&str] = &["a", "b", "x.y", "_1", "n%41"];
const OPERATORS: &[&str] = &["", "+", "#", ".", "/", ";", "?", "&"];

fn spec() -> impl Strategy<Value = Spec> {
    let modifier = prop_oneof![
        2 => Just(String::new()),
        1 => Just("*".to_owned()),
        // Around MAX_COUNTED_PREFIX, to cover both sides of it.
        1 => (1u16..=70).prop_map(|n| format!(":{n}")),
    ];
    (prop::sample::select(NAMES), modifier).prop_map(|(name, modifier)| Spec { name, modifier })
}

/// Literal text: anything but braces, URI characters or not.
fn literal() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:/?#&=,;.%é _~+*!$'()\\[\\]@-]{1,6}"
}

fn part() -> impl Strategy<Value = GenPart> {
    prop_oneof![
        1 => literal().prop_map(GenPart::Literal),
        2 => (prop::sample::select(OPERATORS), prop::collection::vec(spec(), 1..=3))
            .prop_map(|(op, specs)| GenPart::Expression(op, specs)),
    ]
}

fn render(parts: &[GenPart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            GenPart::Literal(l) => l.clone(),
            GenPart::Expression(op, specs) => {
                let list: Vec<String> = specs
                    .iter()
                    .map(|s| format!("{}{}", s.name, s.modifier))
                    .collect();
                format!("{{{op}{}}}", list.join(","))
            }
        })
        .collect()
}

/// Value text: unreserved, reserved and other characters, non-ASCII, and `%` with or
/// without hexadecimal digits after it.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 %é😀:/?#\\[\\]@!$&'()*+,;=._~\"<{}-]{0,8}",
        1 => Just("%41%c3%A9".to_owned()),
        1 => Just(String::new()),
    ]
}

fn value(string_only: bool) -> BoxedStrategy<Option<Value>> {
    let string = text().prop_map(|s| Some(Value::Str(s)));
    if string_only {
        prop_oneof![1 => Just(None), 3 => string].boxed()
    } else {
        prop_oneof![
            1 => Just(None),
            3 => string,
            2 => prop::collection::vec(text(), 0..4).prop_map(|l| Some(Value::List(l))),
            2 => prop::collection::vec((text(), text()), 0..4)
                .prop_map(|a| Some(Value::Assoc(a))),
        ]
        .boxed()
    }
}

/// Values for the template's variables: strings only for those with a prefix anywhere
/// (RFC 6570 applies prefixes to strings only).
fn values(parts: &[GenPart]) -> impl Strategy<Value = Vars> {
    let strategies: Vec<_> = NAMES
        .iter()
        .map(|&name| {
            let prefixed = parts.iter().any(|p| match p {
                GenPart::Expression(_, specs) => specs
                    .iter()
                    .any(|s| s.name == name && s.modifier.starts_with(':')),
                GenPart::Literal(_) => false,
            });
            value(prefixed).prop_map(move |v| (name, v))
        })
        .collect();
    strategies.prop_map(|pairs| {
        pairs
            .into_iter()
            .filter_map(|(name, v)| Some((name.to_owned(), v?)))
            .collect()
    })
}

fn template_and_values() -> impl Strategy<Value = (String, Vars)> {
    prop::collection::vec(part(), 0..5)
        .prop_flat_map(|parts| (Just(render(&parts)), values(&parts)))
}

proptest! {
    /// Whatever a template expands to, for whatever values, it matches.
    #[test]
    fn every_expansion_matches((t, vars) in template_and_values()) {
        let topic = expand(&t, &vars);
        prop_assert!(template(&t).matches(&topic), "{t:?} should match {topic:?} ({vars:?})");
    }

    /// A template that starts with a literal matches no topic that does not start with
    /// it: neither an expansion with a character of the literal changed, nor anything
    /// else.
    #[test]
    fn a_different_literal_prefix_never_matches(
        prefix in "[a-zA-Z0-9:/.?#=-]{1,12}",
        (rest, vars) in template_and_values(),
        at in any::<prop::sample::Index>(),
        replacement in any::<char>(),
        other in any::<String>(),
    ) {
        let t = format!("{prefix}{rest}");
        let compiled = template(&t);
        let topic = expand(&t, &vars);
        // One character of the prefix (all ASCII) replaced by another.
        let i = at.index(prefix.len());
        let changed = if prefix[i..].starts_with(replacement) { '!' } else { replacement };
        let mutated = format!("{}{changed}{}", &topic[..i], &topic[i + 1..]);
        prop_assert!(!compiled.matches(&mutated), "{t:?} matched {mutated:?}");
        prop_assert!(!compiled.matches(&topic[..i]), "{t:?} matched {:?}", &topic[..i]);
        if !other.starts_with(&prefix) {
            prop_assert!(!compiled.matches(&other), "{t:?} matched {other:?}");
        }
    }

    /// Parsing anything, and matching anything with what parses, never panics.
    #[test]
    fn parse_and_match_never_panic(
        t in prop_oneof![any::<String>(), "[{}a-z0-9+#./;?&=,!@|:*%_ é-]{0,40}"],
        topic in any::<String>(),
    ) {
        if let Ok(compiled) = UriTemplate::parse(&t) {
            compiled.matches(&topic);
            compiled.matches(&t);
        }
    }
}
