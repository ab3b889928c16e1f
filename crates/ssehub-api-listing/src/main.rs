//! `public-api FILE.json`: the public API of a library crate, one item a line, sorted, from
//! the JSON rustdoc writes with `--output-format json` (`.ci/public-api` runs it for
//! `ssehub` and compares the result with `crates/ssehub/public-api.txt`).
//!
//! A line is an item's public path with its kind and, for functions and methods, its
//! whole signature; fields, variants, trait impls (auto traits included, blanket impls
//! left out: they come with every type) and the feature an item needs
//! (`#[cfg(feature = "…")]`) have lines too, so that any change a user could notice
//! shows up as a changed line. Items are named by the path users write (`ssehub::Hub`,
//! not the private module that defines it); other crates' items by their defining
//! path, except the prelude's (`Option`, `String`, …).
//!
//! The JSON is read as plain values, not through a typed model: a new rustdoc format
//! that renames something renders it as `?` (this program then fails), rather than
//! failing to parse at all.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

/// The format version this program was written against (rustdoc's `FORMAT_VERSION`).
const KNOWN_FORMAT: u64 = 57;

/// Auto traits worth a line: whether a type is `Send`, `Sync`, … is part of its API.
/// (Unstable ones such as `Freeze` would make the listing depend on the toolchain.)
const AUTO_TRAITS: &[&str] = &["Send", "Sync", "Unpin", "UnwindSafe", "RefUnwindSafe"];

/// Paths of the standard library's prelude, written as the bare name.
const PRELUDE: &[&str] = &[
    "alloc::boxed::Box",
    "alloc::string::String",
    "alloc::string::ToString",
    "alloc::vec::Vec",
    "alloc::borrow::ToOwned",
    "core::clone::Clone",
    "core::cmp::Eq",
    "core::cmp::Ord",
    "core::cmp::PartialEq",
    "core::cmp::PartialOrd",
    "core::convert::AsMut",
    "core::convert::AsRef",
    "core::convert::From",
    "core::convert::Into",
    "core::convert::TryFrom",
    "core::convert::TryInto",
    "core::default::Default",
    "core::iter::traits::collect::IntoIterator",
    "core::iter::traits::iterator::Iterator",
    "core::marker::Copy",
    "core::marker::Send",
    "core::marker::Sized",
    "core::marker::Sync",
    "core::marker::Unpin",
    "core::ops::drop::Drop",
    "core::ops::function::Fn",
    "core::ops::function::FnMut",
    "core::ops::function::FnOnce",
    "core::option::Option",
    "core::result::Result",
];

fn main() -> ExitCode {
    let Some(file) = std::env::args().nth(1) else {
        eprintln!("usage: public-api TARGET/doc/CRATE.json");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("public-api: cannot read {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let doc: Value = match serde_json::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("public-api: {file} is not JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = doc["format_version"].as_u64().unwrap_or(0);
    if format != KNOWN_FORMAT {
        eprintln!(
            "public-api: note: rustdoc JSON format {format}, this program knows {KNOWN_FORMAT}; \
             if the listing changed in form only, regenerate it"
        );
    }
    let lines = match listing(&doc) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("public-api: {e}");
            return ExitCode::FAILURE;
        }
    };
    for line in &lines {
        println!("{line}");
    }
    // The listing writes no `?` but in `?Sized`: any other is a shape of the JSON this
    // program does not know.
    let unknown = lines.iter().filter(|l| !only_maybe_bounds(l)).count();
    if unknown > 0 {
        eprintln!(
            "public-api: {unknown} line(s) hold `?`: rustdoc's JSON has a shape this program \
             does not know (format {format}); teach crates/ssehub-api-listing/src/main.rs"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Whether every `?` of `line` (if any) is a `?Sized`-style bound.
fn only_maybe_bounds(line: &str) -> bool {
    line.match_indices('?')
        .all(|(i, _)| line[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// Every line of the listing of the crate `doc` describes, sorted.
fn listing(doc: &Value) -> Result<Vec<String>, String> {
    let index = doc["index"].as_object().ok_or("no `index`")?;
    let paths = doc["paths"].as_object().ok_or("no `paths`")?;
    let root = id_of(&doc["root"]).ok_or("no `root`")?;
    let mut api = Api {
        index,
        paths,
        public: HashMap::new(),
        external: Vec::new(),
    };
    let name = index
        .get(&root)
        .and_then(|m| m["name"].as_str())
        .ok_or("the root is not in the index")?
        .to_owned();
    api.reach(&root, &name, &[]);
    if !api.public.values().any(|p| !p.features.is_empty()) {
        // This crate has feature-gated items: finding none means the attributes changed
        // form, and the listing would silently lose what needs a feature.
        return Err(
            "no item needs a feature: the format of `cfg` attributes changed? \
                    teach crates/ssehub-api-listing/src/main.rs"
                .into(),
        );
    }
    let mut out = BTreeSet::new();
    let mut ids: Vec<_> = api.public.keys().cloned().collect();
    ids.sort();
    for id in ids {
        api.lines_of(&id, &mut out);
    }
    for (at, source, features) in &api.external {
        let text = format!("{}pub use {at} = {source}", prefix(features, &Value::Null));
        out.insert(((at.clone(), 0, text.clone()), text));
    }
    Ok(out.into_iter().map(|(_, text)| text).collect())
}

/// The id in an `id` field (a number in recent formats), as the index's keys spell it.
fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Where users reach a local item, and the features it needs.
struct Public {
    path: String,
    features: BTreeSet<String>,
}

struct Api<'a> {
    index: &'a Map<String, Value>,
    paths: &'a Map<String, Value>,
    /// The public path of each local item users can reach (the shortest, if several).
    public: HashMap<String, Public>,
    /// Re-exports of other crates' items: where, what, and the features they need.
    external: Vec<(String, String, BTreeSet<String>)>,
}

/// One line: sorted by `.0` (the path it belongs to, then its rank there), printed `.1`.
type Line = ((String, u8, String), String);

impl Api<'_> {
    fn item(&self, id: &str) -> Option<&Value> {
        self.index.get(id)
    }

    /// Record module `id` at `path` and, through its public items and re-exports,
    /// everything it makes reachable.
    fn reach(&mut self, id: &str, path: &str, features: &[String]) {
        if !self.record(id, path, features) {
            return;
        }
        let Some(module) = self.item(id) else { return };
        let items: Vec<String> = module["inner"]["module"]["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(id_of)
            .collect();
        for child in items {
            let Some(item) = self.item(&child) else {
                continue;
            };
            if item["visibility"] != "public" {
                continue;
            }
            let mut features = features.to_vec();
            features.extend(features_of(item));
            if let Some(reexport) = item["inner"].get("use") {
                let Some(target) = id_of(&reexport["id"]) else {
                    continue;
                };
                if reexport["is_glob"] == true {
                    if self.kind(&target) == Some("module") {
                        self.reach_glob(&target, path, &features);
                    }
                    continue;
                }
                let name = reexport["name"].as_str().unwrap_or("?");
                let at = format!("{path}::{name}");
                if self.item(&target).is_some() {
                    self.reach_item(&target, &at, &features);
                } else {
                    // Another crate's item: named by its defining path, if rustdoc knows
                    // it, else as the `use` wrote it.
                    let source = self.path(&json!({"path": reexport["source"], "id": target}));
                    let features = features.into_iter().collect();
                    self.external.push((at, source, features));
                }
            } else if let Some(name) = item["name"].as_str() {
                self.reach_item(&child, &format!("{path}::{name}"), &features);
            }
        }
    }

    /// The public items of module `id`, as if they were in `path` (a glob re-export).
    fn reach_glob(&mut self, id: &str, path: &str, features: &[String]) {
        let Some(module) = self.item(id) else { return };
        let items: Vec<String> = module["inner"]["module"]["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(id_of)
            .collect();
        for child in items {
            let Some(item) = self.item(&child) else {
                continue;
            };
            if let (Some(name), Some("public")) =
                (item["name"].as_str(), item["visibility"].as_str())
            {
                let mut features = features.to_vec();
                features.extend(features_of(item));
                self.reach_item(&child, &format!("{path}::{name}"), &features);
            }
        }
    }

    fn reach_item(&mut self, id: &str, path: &str, features: &[String]) {
        if self.kind(id) == Some("module") {
            self.reach(id, path, features);
        } else if self.item(id).is_some() {
            let mut features = features.to_vec();
            features.extend(self.item(id).map(features_of).into_iter().flatten());
            self.record(id, path, &features);
        }
    }

    /// Remember that `id` is reachable at `path`; whether this is news.
    fn record(&mut self, id: &str, path: &str, features: &[String]) -> bool {
        let own = self.item(id).map(features_of).into_iter().flatten();
        let features: BTreeSet<String> = features.iter().cloned().chain(own).collect();
        let shorter = |known: &str| (path.len(), path) < (known.len(), known);
        if self.public.get(id).is_some_and(|p| !shorter(&p.path)) {
            return false;
        }
        let path = path.to_owned();
        self.public.insert(id.to_owned(), Public { path, features });
        true
    }

    fn kind(&self, id: &str) -> Option<&str> {
        let inner = self.item(id)?["inner"].as_object()?;
        inner.keys().next().map(String::as_str)
    }

    /// The lines of public item `id`: itself, and what belongs to it (fields, variants,
    /// methods, impls).
    fn lines_of(&self, id: &str, out: &mut BTreeSet<Line>) {
        let (Some(item), Some(public)) = (self.item(id), self.public.get(id)) else {
            return;
        };
        let path = &public.path;
        let attrs = prefix(&public.features, item);
        let Some((kind, inner)) = item["inner"].as_object().and_then(|o| o.iter().next()) else {
            return;
        };
        let mut add = |rank: u8, text: String| {
            out.insert(((path.clone(), rank, text.clone()), text));
        };
        match kind.as_str() {
            "module" => add(0, format!("{attrs}pub mod {path}")),
            "function" => add(0, format!("{attrs}pub {}", self.function(path, inner))),
            "struct" => {
                let generics = self.generics(&inner["generics"]);
                let shape = self.struct_shape(&inner["kind"], path, &public.features, &mut add);
                let wher = self.where_clause(&inner["generics"]);
                add(
                    0,
                    format!("{attrs}pub struct {path}{generics}{shape}{wher}"),
                );
                self.impls(inner, path, &public.features, &mut add);
            }
            "union" => {
                let generics = self.generics(&inner["generics"]);
                add(0, format!("{attrs}pub union {path}{generics}"));
                self.fields(&inner["fields"], path, &public.features, &mut add);
                self.impls(inner, path, &public.features, &mut add);
            }
            "enum" => {
                let generics = self.generics(&inner["generics"]);
                let wher = self.where_clause(&inner["generics"]);
                add(0, format!("{attrs}pub enum {path}{generics}{wher}"));
                for v in ids(&inner["variants"]) {
                    self.variant(&v, path, &public.features, &mut add);
                }
                self.impls(inner, path, &public.features, &mut add);
            }
            "trait" => self.trait_lines(inner, path, &public.features, &attrs, &mut add),
            "constant" => add(
                0,
                format!("{attrs}pub const {path}: {}", self.ty(&inner["type"])),
            ),
            "static" => {
                let m = if inner["is_mutable"] == true {
                    "mut "
                } else {
                    ""
                };
                add(
                    0,
                    format!("{attrs}pub static {m}{path}: {}", self.ty(&inner["type"])),
                );
            }
            "type_alias" => add(
                0,
                format!(
                    "{attrs}pub type {path}{} = {}",
                    self.generics(&inner["generics"]),
                    self.ty(&inner["type"])
                ),
            ),
            "macro" | "proc_macro" => add(0, format!("{attrs}pub macro {path}!")),
            other => add(0, format!("{attrs}pub {other} {path}")),
        }
    }

    /// A struct's shape after its name; its named fields get lines of their own.
    fn struct_shape(
        &self,
        kind: &Value,
        path: &str,
        features: &BTreeSet<String>,
        add: &mut impl FnMut(u8, String),
    ) -> String {
        if kind == "unit" {
            return ";".into();
        }
        if let Some(fields) = kind.get("tuple").and_then(Value::as_array) {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| match id_of(f).and_then(|id| self.item(&id).cloned()) {
                    Some(field) => format!("pub {}", self.ty(&field["inner"]["struct_field"])),
                    None => "_".into(),
                })
                .collect();
            return format!("({})", fields.join(", "));
        }
        let plain = &kind["plain"];
        self.fields(&plain["fields"], path, features, add);
        if plain["has_stripped_fields"] == true {
            " { .. }".into()
        } else {
            String::new()
        }
    }

    fn fields(
        &self,
        fields: &Value,
        path: &str,
        features: &BTreeSet<String>,
        add: &mut impl FnMut(u8, String),
    ) {
        for f in ids(fields) {
            let Some(field) = self.item(&f) else { continue };
            let name = field["name"].as_str().unwrap_or("?");
            let ty = self.ty(&field["inner"]["struct_field"]);
            let attrs = prefix(features, field);
            add(1, format!("{attrs}pub field {path}::{name}: {ty}"));
        }
    }

    fn variant(
        &self,
        id: &str,
        path: &str,
        features: &BTreeSet<String>,
        add: &mut impl FnMut(u8, String),
    ) {
        let Some(variant) = self.item(id) else { return };
        let name = variant["name"].as_str().unwrap_or("?");
        let inner = &variant["inner"]["variant"];
        let kind = &inner["kind"];
        let field_ty = |f: &Value| match id_of(f).and_then(|id| self.item(&id).cloned()) {
            Some(field) => self.ty(&field["inner"]["struct_field"]),
            None => "_".into(),
        };
        let shape = if kind == "plain" {
            String::new()
        } else if let Some(fields) = kind.get("tuple").and_then(Value::as_array) {
            let fields: Vec<String> = fields.iter().map(field_ty).collect();
            format!("({})", fields.join(", "))
        } else {
            let s = &kind["struct"];
            let mut fields: Vec<String> = ids(&s["fields"])
                .iter()
                .filter_map(|f| self.item(f))
                .map(|f| {
                    let ty = self.ty(&f["inner"]["struct_field"]);
                    format!("{}: {ty}", f["name"].as_str().unwrap_or("?"))
                })
                .collect();
            if s["has_stripped_fields"] == true {
                fields.push("..".into());
            }
            format!(" {{ {} }}", fields.join(", "))
        };
        let discriminant = inner["discriminant"]["expr"]
            .as_str()
            .map(|d| format!(" = {d}"))
            .unwrap_or_default();
        let attrs = prefix(features, variant);
        add(
            1,
            format!("{attrs}pub variant {path}::{name}{shape}{discriminant}"),
        );
    }

    /// The impls of a type: inherent items one line each, a trait impl one line.
    fn impls(
        &self,
        inner: &Value,
        path: &str,
        features: &BTreeSet<String>,
        add: &mut impl FnMut(u8, String),
    ) {
        for id in ids(&inner["impls"]) {
            let Some(imp) = self.item(&id) else { continue };
            let i = &imp["inner"]["impl"];
            if !i["blanket_impl"].is_null() {
                continue;
            }
            let mut features = features.clone();
            features.extend(features_of(imp));
            if i["trait"].is_null() {
                self.inherent(i, path, &features, add);
                continue;
            }
            let trait_name = i["trait"]["path"].as_str().unwrap_or("");
            let last = trait_name.rsplit("::").next().unwrap_or("");
            if i["is_synthetic"] == true && !AUTO_TRAITS.contains(&last) {
                continue;
            }
            let attrs = prefix(&features, imp);
            add(3, format!("{attrs}{}", self.impl_line(i)));
        }
    }

    fn inherent(
        &self,
        imp: &Value,
        path: &str,
        features: &BTreeSet<String>,
        add: &mut impl FnMut(u8, String),
    ) {
        for id in ids(&imp["items"]) {
            let Some(item) = self.item(&id) else { continue };
            if item["visibility"] != "public" {
                continue;
            }
            let name = item["name"].as_str().unwrap_or("?");
            let mut features = features.clone();
            features.extend(features_of(item));
            let attrs = prefix(&features, item);
            let full = format!("{path}::{name}");
            let inner = &item["inner"];
            let text = if let Some(f) = inner.get("function") {
                format!("pub {}", self.function(&full, f))
            } else if let Some(c) = inner.get("assoc_const") {
                format!("pub const {full}: {}", self.ty(&c["type"]))
            } else if let Some(t) = inner.get("assoc_type") {
                format!("pub type {full} = {}", self.opt_ty(&t["type"]))
            } else {
                format!("pub ? {full}")
            };
            add(2, format!("{attrs}{text}"));
        }
    }

    /// `impl<G> Trait for Type where … { type A = T; const C: U; }`.
    fn impl_line(&self, i: &Value) -> String {
        let neg = if i["is_negative"] == true { "!" } else { "" };
        let unsafety = if i["is_unsafe"] == true {
            "unsafe "
        } else {
            ""
        };
        let mut assoc = Vec::new();
        for id in ids(&i["items"]) {
            let Some(item) = self.item(&id) else { continue };
            let name = item["name"].as_str().unwrap_or("?");
            if let Some(t) = item["inner"].get("assoc_type") {
                assoc.push(format!("type {name} = {}", self.opt_ty(&t["type"])));
            } else if let Some(c) = item["inner"].get("assoc_const") {
                assoc.push(format!("const {name}: {}", self.ty(&c["type"])));
            }
        }
        assoc.sort();
        let assoc = if assoc.is_empty() {
            String::new()
        } else {
            format!(" {{ {} }}", assoc.join("; "))
        };
        format!(
            "{unsafety}impl{} {neg}{} for {}{}{assoc}",
            self.generics(&i["generics"]),
            self.path(&i["trait"]),
            self.ty(&i["for"]),
            self.where_clause(&i["generics"]),
        )
    }

    fn trait_lines(
        &self,
        t: &Value,
        path: &str,
        features: &BTreeSet<String>,
        attrs: &str,
        add: &mut impl FnMut(u8, String),
    ) {
        let unsafety = if t["is_unsafe"] == true {
            "unsafe "
        } else {
            ""
        };
        let auto = if t["is_auto"] == true { "auto " } else { "" };
        let bounds = self.bounds(&t["bounds"]);
        let bounds = if bounds.is_empty() {
            bounds
        } else {
            format!(": {bounds}")
        };
        add(
            0,
            format!(
                "{attrs}pub {unsafety}{auto}trait {path}{}{bounds}{}",
                self.generics(&t["generics"]),
                self.where_clause(&t["generics"])
            ),
        );
        for id in ids(&t["items"]) {
            let Some(item) = self.item(&id) else { continue };
            let name = item["name"].as_str().unwrap_or("?");
            let full = format!("{path}::{name}");
            let mut features = features.clone();
            features.extend(features_of(item));
            let attrs = prefix(&features, item);
            let inner = &item["inner"];
            let text = if let Some(f) = inner.get("function") {
                let provided = if f["has_body"] == true { " { .. }" } else { "" };
                format!("{}{provided}", self.function(&full, f))
            } else if let Some(c) = inner.get("assoc_const") {
                format!("const {full}: {}", self.ty(&c["type"]))
            } else if let Some(ty) = inner.get("assoc_type") {
                let bounds = self.bounds(&ty["bounds"]);
                let bounds = if bounds.is_empty() {
                    bounds
                } else {
                    format!(": {bounds}")
                };
                let default = if ty["type"].is_object() {
                    format!(" = {}", self.ty(&ty["type"]))
                } else {
                    String::new()
                };
                format!("type {full}{bounds}{default}")
            } else {
                format!("? {full}")
            };
            add(2, format!("{attrs}{text}"));
        }
        // Impls of this trait for types that are not this crate's public types (those
        // are listed with their type).
        for id in ids(&t["implementations"]) {
            let Some(imp) = self.item(&id) else { continue };
            let i = &imp["inner"]["impl"];
            let for_local = id_of(&i["for"]["resolved_path"]["id"])
                .is_some_and(|ty| self.public.contains_key(&ty));
            if for_local {
                continue;
            }
            let attrs = prefix(features, imp);
            add(3, format!("{attrs}{}", self.impl_line(i)));
        }
    }

    /// `fn path<G>(args) -> R where …`, with its qualifiers.
    fn function(&self, path: &str, f: &Value) -> String {
        let h = &f["header"];
        let mut q = String::new();
        for (key, word) in [
            ("is_const", "const "),
            ("is_async", "async "),
            ("is_unsafe", "unsafe "),
        ] {
            if h[key] == true {
                q.push_str(word);
            }
        }
        match &h["abi"] {
            Value::String(abi) if abi == "Rust" => {}
            Value::Null => {}
            abi => {
                let _ = write!(q, "extern {} ", compact(abi));
            }
        }
        let sig = &f["sig"];
        let args: Vec<String> = sig["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|arg| {
                let name = arg[0].as_str().unwrap_or("_");
                let ty = &arg[1];
                if name == "self" {
                    self.self_arg(ty)
                } else {
                    format!("{name}: {}", self.ty(ty))
                }
            })
            .collect();
        let output = if sig["output"].is_null() {
            String::new()
        } else {
            format!(" -> {}", self.ty(&sig["output"]))
        };
        format!(
            "{q}fn {path}{}({}){output}{}",
            self.generics(&f["generics"]),
            args.join(", "),
            self.where_clause(&f["generics"])
        )
    }

    /// `self`, `&self`, `&mut self` or `self: T`.
    fn self_arg(&self, ty: &Value) -> String {
        if ty["generic"] == "Self" {
            return "self".into();
        }
        let r = &ty["borrowed_ref"];
        if r["type"]["generic"] == "Self" {
            let lifetime = r["lifetime"]
                .as_str()
                .map(|l| format!("{l} "))
                .unwrap_or_default();
            let m = if r["is_mutable"] == true { "mut " } else { "" };
            return format!("&{lifetime}{m}self");
        }
        format!("self: {}", self.ty(ty))
    }

    /// `<'a, T: Bound = Default, const N: usize>`, without `impl Trait` arguments' own.
    fn generics(&self, g: &Value) -> String {
        let params: Vec<String> = g["params"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| self.param(p))
            .collect();
        if params.is_empty() {
            String::new()
        } else {
            format!("<{}>", params.join(", "))
        }
    }

    fn param(&self, p: &Value) -> Option<String> {
        let name = p["name"].as_str().unwrap_or("?");
        let kind = &p["kind"];
        if let Some(l) = kind.get("lifetime") {
            let outlives: Vec<&str> = l["outlives"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            return Some(if outlives.is_empty() {
                name.to_owned()
            } else {
                format!("{name}: {}", outlives.join(" + "))
            });
        }
        if let Some(t) = kind.get("type") {
            if t["is_synthetic"] == true {
                return None;
            }
            let bounds = self.bounds(&t["bounds"]);
            let bounds = if bounds.is_empty() {
                bounds
            } else {
                format!(": {bounds}")
            };
            let default = if t["default"].is_object() {
                format!(" = {}", self.ty(&t["default"]))
            } else {
                String::new()
            };
            return Some(format!("{name}{bounds}{default}"));
        }
        if let Some(c) = kind.get("const") {
            let default = c["default"]
                .as_str()
                .map(|d| format!(" = {d}"))
                .unwrap_or_default();
            return Some(format!("const {name}: {}{default}", self.ty(&c["type"])));
        }
        Some(format!("?{}", compact(kind)))
    }

    /// ` where T: Bound, …`, or nothing.
    fn where_clause(&self, g: &Value) -> String {
        let preds: Vec<String> = g["where_predicates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                if let Some(b) = p.get("bound_predicate") {
                    format!(
                        "{}{}: {}",
                        self.hrtb(&b["generic_params"]),
                        self.ty(&b["type"]),
                        self.bounds(&b["bounds"])
                    )
                } else if let Some(l) = p.get("lifetime_predicate") {
                    let outlives: Vec<&str> = l["outlives"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    format!(
                        "{}: {}",
                        l["lifetime"].as_str().unwrap_or("?"),
                        outlives.join(" + ")
                    )
                } else if let Some(e) = p.get("eq_predicate") {
                    format!("{} == {}", self.ty(&e["lhs"]), self.term(&e["rhs"]))
                } else {
                    format!("?{}", compact(p))
                }
            })
            .collect();
        if preds.is_empty() {
            String::new()
        } else {
            format!(" where {}", preds.join(", "))
        }
    }

    /// `for<'a> ` before a bound, or nothing.
    fn hrtb(&self, params: &Value) -> String {
        let params: Vec<String> = params
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| self.param(p))
            .collect();
        if params.is_empty() {
            String::new()
        } else {
            format!("for<{}> ", params.join(", "))
        }
    }

    fn bounds(&self, bounds: &Value) -> String {
        let bounds: Vec<String> = bounds
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| self.bound(b))
            .collect();
        bounds.join(" + ")
    }

    fn bound(&self, b: &Value) -> String {
        if let Some(t) = b.get("trait_bound") {
            let modifier = match t["modifier"].as_str() {
                Some("maybe") => "?",
                Some("maybe_const") => "~const ",
                _ => "",
            };
            return format!(
                "{}{modifier}{}",
                self.hrtb(&t["generic_params"]),
                self.path(&t["trait"])
            );
        }
        if let Some(l) = b.get("outlives").and_then(Value::as_str) {
            return l.to_owned();
        }
        if let Some(args) = b.get("use").and_then(Value::as_array) {
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    a.get("lifetime")
                        .or_else(|| a.get("param"))
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("?{}", compact(a)), str::to_owned)
                })
                .collect();
            return format!("use<{}>", args.join(", "));
        }
        format!("?{}", compact(b))
    }

    fn opt_ty(&self, t: &Value) -> String {
        if t.is_null() {
            "_".into()
        } else {
            self.ty(t)
        }
    }

    /// A type as Rust would write it.
    fn ty(&self, t: &Value) -> String {
        let Some((kind, v)) = t.as_object().and_then(|o| o.iter().next()) else {
            return match t.as_str() {
                Some("infer") => "_".into(),
                _ => format!("?{}", compact(t)),
            };
        };
        match kind.as_str() {
            "resolved_path" => self.path(v),
            "generic" | "primitive" => v.as_str().unwrap_or("?").to_owned(),
            "tuple" => {
                let items: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| self.ty(t))
                    .collect();
                if items.len() == 1 {
                    format!("({},)", items[0])
                } else {
                    format!("({})", items.join(", "))
                }
            }
            "slice" => format!("[{}]", self.ty(v)),
            "array" => format!(
                "[{}; {}]",
                self.ty(&v["type"]),
                v["len"].as_str().unwrap_or("?")
            ),
            "pat" => self.ty(&v["type"]),
            "infer" => "_".into(),
            "borrowed_ref" => {
                let lifetime = v["lifetime"]
                    .as_str()
                    .map(|l| format!("{l} "))
                    .unwrap_or_default();
                let m = if v["is_mutable"] == true { "mut " } else { "" };
                format!("&{lifetime}{m}{}", self.ty(&v["type"]))
            }
            "raw_pointer" => {
                let m = if v["is_mutable"] == true {
                    "mut"
                } else {
                    "const"
                };
                format!("*{m} {}", self.ty(&v["type"]))
            }
            "impl_trait" => format!("impl {}", self.bounds(v)),
            "dyn_trait" => {
                let mut parts: Vec<String> = v["traits"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{}{}",
                            self.hrtb(&p["generic_params"]),
                            self.path(&p["trait"])
                        )
                    })
                    .collect();
                if let Some(l) = v["lifetime"].as_str() {
                    parts.push(l.to_owned());
                }
                format!("dyn {}", parts.join(" + "))
            }
            "qualified_path" => {
                let name = v["name"].as_str().unwrap_or("?");
                let args = self.args(&v["args"]);
                let self_ty = self.ty(&v["self_type"]);
                if v["trait"].is_null() {
                    format!("{self_ty}::{name}{args}")
                } else {
                    format!("<{self_ty} as {}>::{name}{args}", self.path(&v["trait"]))
                }
            }
            "function_pointer" => {
                let sig = &v["sig"];
                let args: Vec<String> = sig["inputs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| self.ty(&a[1]))
                    .collect();
                let output = if sig["output"].is_null() {
                    String::new()
                } else {
                    format!(" -> {}", self.ty(&sig["output"]))
                };
                format!(
                    "{}fn({}){output}",
                    self.hrtb(&v["generic_params"]),
                    args.join(", ")
                )
            }
            _ => format!("?{}", compact(t)),
        }
    }

    /// A path with its generic arguments: the public path of this crate's items, the
    /// defining path of other crates' (the bare name for the prelude's).
    fn path(&self, p: &Value) -> String {
        let written = p["path"].as_str().unwrap_or("?");
        let id = id_of(&p["id"]);
        let name = id
            .as_ref()
            .and_then(|id| {
                if let Some(public) = self.public.get(id) {
                    return Some(public.path.clone());
                }
                let segments: Vec<&str> = self.paths.get(id)?["path"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                let full = segments.join("::");
                Some(if PRELUDE.contains(&full.as_str()) {
                    segments.last().copied().unwrap_or("?").to_owned()
                } else {
                    full
                })
            })
            .unwrap_or_else(|| written.to_owned());
        format!("{name}{}", self.args(&p["args"]))
    }

    fn args(&self, a: &Value) -> String {
        if let Some(ab) = a.get("angle_bracketed") {
            let mut args: Vec<String> = ab["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| {
                    if let Some(l) = g.get("lifetime").and_then(Value::as_str) {
                        l.to_owned()
                    } else if let Some(t) = g.get("type") {
                        self.ty(t)
                    } else if let Some(c) = g.get("const") {
                        c["expr"].as_str().unwrap_or("?").to_owned()
                    } else if g == "infer" {
                        "_".into()
                    } else {
                        format!("?{}", compact(g))
                    }
                })
                .collect();
            for c in ab["constraints"].as_array().into_iter().flatten() {
                let name = c["name"].as_str().unwrap_or("?");
                let cargs = self.args(&c["args"]);
                let b = &c["binding"];
                if let Some(term) = b.get("equality") {
                    args.push(format!("{name}{cargs} = {}", self.term(term)));
                } else if let Some(bounds) = b.get("constraint") {
                    args.push(format!("{name}{cargs}: {}", self.bounds(bounds)));
                }
            }
            return if args.is_empty() {
                String::new()
            } else {
                format!("<{}>", args.join(", "))
            };
        }
        if let Some(p) = a.get("parenthesized") {
            let inputs: Vec<String> = p["inputs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| self.ty(t))
                .collect();
            let output = if p["output"].is_null() {
                String::new()
            } else {
                format!(" -> {}", self.ty(&p["output"]))
            };
            return format!("({}){output}", inputs.join(", "));
        }
        if a.is_null() {
            return String::new();
        }
        if a == "return_type_notation" {
            return "(..)".into();
        }
        format!("?{}", compact(a))
    }

    fn term(&self, t: &Value) -> String {
        if let Some(ty) = t.get("type") {
            self.ty(ty)
        } else if let Some(c) = t.get("constant") {
            c["expr"].as_str().unwrap_or("?").to_owned()
        } else {
            format!("?{}", compact(t))
        }
    }
}

/// The ids of a JSON array of ids.
fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(id_of)
        .collect()
}

/// The features an item's own `cfg` attributes name. Rustdoc writes them as source
/// (`#[cfg(feature = "jwt")]`) in older formats and as the compiler's debug form
/// (`CfgTrace([NameValue { name: "feature", value: Some("jwt"), … }])`) in newer ones.
fn features_of(item: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for attr in item["attrs"].as_array().into_iter().flatten() {
        let text = match attr {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let text = text.replace("\\\"", "\"");
        if !text.contains("cfg") && !text.contains("Cfg") {
            continue;
        }
        for marker in ["feature = \"", "name: \"feature\", value: Some(\""] {
            let mut rest = text.as_str();
            while let Some(at) = rest.find(marker) {
                rest = &rest[at + marker.len()..];
                if let Some(end) = rest.find('"') {
                    found.push(rest[..end].to_owned());
                }
            }
        }
    }
    found
}

/// What goes before an item's line: the features it needs, and the attributes that
/// change what users may do with it.
fn prefix(features: &BTreeSet<String>, item: &Value) -> String {
    let mut p = String::new();
    match features.len() {
        0 => {}
        1 => {
            let f = features.iter().next().expect("one feature");
            let _ = write!(p, "#[cfg(feature = \"{f}\")] ");
        }
        _ => {
            let all: Vec<String> = features
                .iter()
                .map(|f| format!("feature = \"{f}\""))
                .collect();
            let _ = write!(p, "#[cfg(all({}))] ", all.join(", "));
        }
    }
    for attr in item["attrs"].as_array().into_iter().flatten() {
        if attr == "non_exhaustive" || attr.as_str() == Some("#[non_exhaustive]") {
            p.push_str("#[non_exhaustive] ");
        }
    }
    if !item["deprecation"].is_null() {
        p.push_str("#[deprecated] ");
    }
    p
}

/// A JSON value on one line, for what this program cannot render.
fn compact(v: &Value) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(index: Value) -> (Map<String, Value>, Map<String, Value>) {
        (index.as_object().unwrap().clone(), Map::new())
    }

    #[test]
    fn types_read_as_rust() {
        let (index, paths) = api(json!({}));
        let a = Api {
            index: &index,
            paths: &paths,
            public: HashMap::new(),
            external: Vec::new(),
        };
        let t = json!({"borrowed_ref": {"lifetime": null, "is_mutable": true, "type":
            {"slice": {"primitive": "u8"}}}});
        assert_eq!(a.ty(&t), "&mut [u8]");
        let t = json!({"resolved_path": {"path": "Result", "id": 1, "args": {"angle_bracketed":
            {"args": [{"type": {"tuple": []}}, {"type": {"generic": "E"}}], "constraints": []}}}});
        assert_eq!(a.ty(&t), "Result<(), E>");
        let t = json!({"impl_trait": [{"trait_bound": {"trait": {"path": "Fn", "id": 2, "args":
            {"parenthesized": {"inputs": [{"primitive": "u64"}], "output": null}}},
            "generic_params": [], "modifier": "none"}}, {"outlives": "'static"}]});
        assert_eq!(a.ty(&t), "impl Fn(u64) + 'static");
        assert!(a.ty(&json!({"something_new": 1})).starts_with('?'));
    }

    #[test]
    fn features_in_either_form() {
        let old = json!({"attrs": ["#[cfg(feature = \"jwt\")]"]});
        assert_eq!(features_of(&old), ["jwt"]);
        let new = json!({"attrs": [{"other": "#[attr = CfgTrace([NameValue { name: \"feature\", \
            value: Some(\"tls\"), span: lib.rs:1:1 }])]"}]});
        assert_eq!(features_of(&new), ["tls"]);
        assert!(features_of(&json!({"attrs": ["non_exhaustive"]})).is_empty());
    }

    #[test]
    fn maybe_bounds_are_not_unknown_shapes() {
        assert!(only_maybe_bounds("pub fn f<T: ?Sized>(t: &T)"));
        assert!(!only_maybe_bounds("pub fn f(t: ?{\"x\":1})"));
    }
}
