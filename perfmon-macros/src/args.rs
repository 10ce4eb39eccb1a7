//! Parsing and validation of the macros' arguments.
//!
//! Every macro takes a comma-separated list of `key = "value"` pairs; `track_batch` and `measure`
//! also take their name as a leading string literal. All mistakes in one attribute are reported
//! together, each on its own token.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitStr, Token};

/// One raw argument as written.
pub enum RawArg {
    /// `"name"`
    Positional(LitStr),
    /// `key = value`
    KeyValue { key: Ident, value: syn::Lit },
    /// `key` with no value
    Bare(Ident),
}

/// The whole argument list, unvalidated.
pub struct RawArgs(pub Vec<RawArg>);

impl Parse for RawArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Vec::new();
        while !input.is_empty() {
            if input.peek(LitStr) {
                args.push(RawArg::Positional(input.parse()?));
            } else {
                // `crate` is a keyword, so accept it explicitly.
                let key = if input.peek(Token![crate]) {
                    let tok: Token![crate] = input.parse()?;
                    Ident::new("crate", tok.span)
                } else {
                    input.call(Ident::parse_any_ident)?
                };
                if input.peek(Token![=]) {
                    input.parse::<Token![=]>()?;
                    let value: syn::Lit = input.parse().map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            format!("expected a string literal after `{key} =`, such as `{key} = \"...\"`"),
                        )
                    })?;
                    args.push(RawArg::KeyValue { key, value });
                } else {
                    args.push(RawArg::Bare(key));
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(RawArgs(args))
    }
}

trait ParseAnyIdent {
    fn parse_any_ident(input: ParseStream) -> syn::Result<Ident>;
}

impl ParseAnyIdent for Ident {
    fn parse_any_ident(input: ParseStream) -> syn::Result<Ident> {
        use syn::ext::IdentExt;
        Ident::parse_any(input).map_err(|e| {
            syn::Error::new(e.span(), "expected an argument such as `key = \"value\"`")
        })
    }
}

/// Collects several errors so they are reported together.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub fn spanned<T: quote::ToTokens>(&mut self, tokens: T, msg: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }
    pub fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Which macro is being parsed; decides the accepted keys and the positional name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MacroKind {
    Api,
    Query,
    Batch,
    Cache,
    Measure,
}

impl MacroKind {
    pub fn attr_name(self) -> &'static str {
        match self {
            MacroKind::Api => "track_api",
            MacroKind::Query => "track_query",
            MacroKind::Batch => "track_batch",
            MacroKind::Cache => "track_cache",
            MacroKind::Measure => "measure",
        }
    }
    fn keys(self) -> &'static [&'static str] {
        match self {
            MacroKind::Api => &["slow", "path", "method", "apdex", "crate"],
            MacroKind::Query => &["table", "kind", "op", "slow", "crate"],
            MacroKind::Batch => &["name", "crate"],
            MacroKind::Cache => &["key", "crate"],
            MacroKind::Measure => &["name", "threshold", "crate"],
        }
    }
    fn takes_positional_name(self) -> bool {
        matches!(self, MacroKind::Batch | MacroKind::Measure)
    }
}

/// Read or write, for `track_query`.
#[derive(Clone, Copy)]
pub enum QueryKind {
    Read,
    Write,
}

/// Validated arguments, with everything optional; the expansion fills in defaults.
pub struct Args {
    pub kind: MacroKind,
    pub slow_ns: Option<u64>,
    /// `#[track_api(apdex = "300ms")]`: the route's Apdex threshold T.
    pub apdex_ns: Option<u64>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub table: Option<String>,
    pub query_kind: Option<QueryKind>,
    pub op: Option<String>,
    pub name: Option<String>,
    pub key: Option<String>,
    pub krate: Option<syn::Path>,
}

/// HTTP methods accepted by `track_api(method = ..)`.
pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
];

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn expect_str(errors: &mut Errors, key: &Ident, value: &syn::Lit) -> Option<LitStr> {
    match value {
        syn::Lit::Str(s) => Some(s.clone()),
        other => {
            let example = match key.to_string().as_str() {
                "slow" | "threshold" | "apdex" => "\"250ms\"",
                "kind" => "\"read\"",
                "method" => "\"POST\"",
                "path" => "\"/api/items\"",
                "crate" => "\"perfmon_runtime\"",
                _ => "\"...\"",
            };
            errors.spanned(
                other,
                format!("`{key}` takes a string literal, such as `{key} = {example}`"),
            );
            None
        }
    }
}

fn non_empty(errors: &mut Errors, lit: &LitStr, what: &str) -> Option<String> {
    let v = lit.value();
    if v.trim().is_empty() {
        errors.spanned(lit, format!("{what} must not be empty"));
        None
    } else {
        Some(v)
    }
}

impl Args {
    /// Validates the raw list for `kind`, reporting every mistake at its token.
    pub fn validate(kind: MacroKind, raw: RawArgs) -> syn::Result<Args> {
        let mut errors = Errors::default();
        let mut args = Args {
            kind,
            slow_ns: None,
            apdex_ns: None,
            path: None,
            method: None,
            table: None,
            query_kind: None,
            op: None,
            name: None,
            key: None,
            krate: None,
        };
        let mut seen: Vec<String> = Vec::new();
        let accepted = kind.keys();
        let attr = kind.attr_name();
        for arg in raw.0 {
            match arg {
                RawArg::Positional(lit) => {
                    if !kind.takes_positional_name() {
                        errors.spanned(
                            &lit,
                            format!(
                                "`#[{attr}]` takes no positional argument; expected `key = \"value\"` with a key among: {}",
                                list(accepted)
                            ),
                        );
                    } else if seen.iter().any(|s| s == "name") {
                        errors.spanned(&lit, "the name is given twice; give it once, as `\"name\"` or `name = \"name\"`");
                    } else {
                        seen.push("name".into());
                        args.name = non_empty(&mut errors, &lit, "the name");
                    }
                }
                RawArg::Bare(key) => {
                    if accepted.contains(&key.to_string().as_str()) {
                        errors.spanned(
                            &key,
                            format!(
                                "expected `=` and a value after `{key}`, such as `{key} = \"...\"`"
                            ),
                        );
                    } else {
                        errors.spanned(
                            &key,
                            format!(
                                "unknown argument `{key}`; expected one of: {}",
                                list(accepted)
                            ),
                        );
                    }
                }
                RawArg::KeyValue { key, value } => {
                    let k = key.to_string();
                    if !accepted.contains(&k.as_str()) {
                        errors.spanned(
                            &key,
                            format!(
                                "unknown argument `{k}`; expected one of: {}",
                                list(accepted)
                            ),
                        );
                        continue;
                    }
                    if seen.contains(&k) {
                        let msg = if k == "name" {
                            "the name is given twice; give it once, as `\"name\"` or `name = \"name\"`".to_string()
                        } else {
                            format!("`{k}` is given more than once")
                        };
                        errors.spanned(&key, msg);
                        continue;
                    }
                    seen.push(k.clone());
                    let Some(lit) = expect_str(&mut errors, &key, &value) else {
                        continue;
                    };
                    match k.as_str() {
                        "slow" | "threshold" => match parse_duration(&lit.value()) {
                            Ok(ns) => args.slow_ns = Some(ns),
                            Err(msg) => errors.spanned(&lit, msg),
                        },
                        // zero is refused by `parse_duration`
                        "apdex" => match parse_duration(&lit.value()) {
                            Ok(ns) => args.apdex_ns = Some(ns),
                            Err(msg) => errors.spanned(&lit, msg),
                        },
                        "path" => {
                            let v = lit.value();
                            if !v.starts_with('/') {
                                errors.spanned(&lit, format!("`path` must start with `/`, such as \"/api/items\"; got \"{v}\""));
                            } else {
                                args.path = Some(v);
                            }
                        }
                        "method" => {
                            let v = lit.value();
                            if METHODS.contains(&v.as_str()) {
                                args.method = Some(v);
                            } else {
                                errors.spanned(
                                    &lit,
                                    format!("unknown HTTP method \"{v}\"; expected one of: {}", list(METHODS)),
                                );
                            }
                        }
                        "table" => args.table = non_empty(&mut errors, &lit, "`table`"),
                        "op" => args.op = non_empty(&mut errors, &lit, "`op`"),
                        "key" => args.key = non_empty(&mut errors, &lit, "`key`"),
                        "name" => args.name = non_empty(&mut errors, &lit, "the name"),
                        "kind" => match lit.value().as_str() {
                            "read" => args.query_kind = Some(QueryKind::Read),
                            "write" => args.query_kind = Some(QueryKind::Write),
                            other => errors.spanned(
                                &lit,
                                format!("unknown query kind \"{other}\"; expected one of: `read`, `write`"),
                            ),
                        },
                        "crate" => match lit.parse::<syn::Path>() {
                            Ok(p) => args.krate = Some(p),
                            Err(_) => errors.spanned(
                                &lit,
                                format!("\"{}\" is not a path; expected a crate path such as \"perfmon_runtime\" or \"::my_crate::perfmon\"", lit.value()),
                            ),
                        },
                        _ => unreachable!("every accepted key is handled"),
                    }
                }
            }
        }
        errors.finish()?;
        Ok(args)
    }

    /// Reports required arguments that are missing, at the attribute's path.
    pub fn check_required(&self, attr_span: Span) -> syn::Result<()> {
        let attr = self.kind.attr_name();
        let mut errors = Errors::default();
        let mut missing = |what: &str, example: &str| {
            errors.push(syn::Error::new(
                attr_span,
                format!("`#[{attr}]` needs {what}, such as `#[{attr}({example})]`"),
            ))
        };
        match self.kind {
            MacroKind::Query => {
                if self.table.is_none() {
                    missing("a table", "table = \"Staff\", kind = \"read\"");
                }
                if self.query_kind.is_none() {
                    missing("a query kind", "table = \"Staff\", kind = \"read\"");
                }
            }
            MacroKind::Batch => {
                if self.name.is_none() {
                    missing("a batch name", "\"weekly-assignment\"");
                }
            }
            MacroKind::Cache => {
                if self.key.is_none() {
                    missing("a cache key group", "key = \"fairness:stats\"");
                }
            }
            MacroKind::Measure => {
                if self.name.is_none() {
                    missing("a name", "\"calculate-fairness\", threshold = \"1s\"");
                }
            }
            MacroKind::Api => {}
        }
        errors.finish()
    }
}

/// Parses `"500us"`, `"250ms"`, `"3s"`, `"1.5s"`, `"2m"` into nanoseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    const HELP: &str = "expected a number followed by one of `us`, `ms`, `s`, `m`, such as \"500us\", \"250ms\", \"1.5s\" or \"2m\"";
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("malformed duration \"{text}\"; {HELP}"));
    }
    let scale: f64 = match unit {
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "" => return Err(format!("the duration \"{text}\" has no unit; {HELP}")),
        other => return Err(format!("unknown unit `{other}` in \"{text}\"; {HELP}")),
    };
    let valid_number = !num.is_empty()
        && num.chars().filter(|c| *c == '.').count() <= 1
        && !num.starts_with('.')
        && !num.ends_with('.');
    let value: f64 = match num.parse::<f64>() {
        Ok(v) if valid_number => v,
        _ => return Err(format!("malformed duration \"{text}\"; {HELP}")),
    };
    let ns = value * scale;
    if ns < 1.0 {
        return Err(format!(
            "the duration \"{text}\" must be greater than zero; {HELP}"
        ));
    }
    if ns > 24.0 * 3600e9 {
        return Err(format!(
            "the duration \"{text}\" is longer than the largest accepted threshold (24 hours)"
        ));
    }
    Ok(ns.round() as u64)
}

/// The crate root generated code refers to.
pub fn crate_path(args: &Args) -> TokenStream {
    match &args.krate {
        Some(p) => quote::quote!(#p),
        None => quote::quote!(::perfmon_runtime),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500us"), Ok(500_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("3s"), Ok(3_000_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("2m"), Ok(120_000_000_000));
        for bad in [
            "", "3", "3x", "s", "1..5s", ".5s", "0ms", "-3s", "25h", "5.s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
