//! Expansion: wraps the user's fn so that its duration and outcome reach `perfmon_runtime`.
//!
//! * sync fn: the body runs in an immediately called `move` closure, so `return` and `?` keep
//!   their meaning and the return value can be inspected for its status;
//! * async fn: the body becomes an inner `async move` block awaited by the fn itself, so the
//!   timer starts at the first poll and stops at completion, across every `.await`;
//! * `#[async_trait]` methods (a sync fn returning `Box::pin(async move { .. })`): the boxed
//!   future is timed, not its construction.
//!
//! A guard started before the body records a failure (or status 499/500 for `track_api`) when it
//! is dropped without finishing: on a panic, which still propagates, or when a future is dropped.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::visit_mut::VisitMut;
use syn::{Expr, ItemFn, ReturnType, Stmt, Type};

use crate::args::{crate_path, Args, MacroKind, QueryKind, RawArgs};

const DEFAULT_API_SLOW_NS: u64 = 5_000_000_000;
const DEFAULT_QUERY_SLOW_NS: u64 = 100_000_000;

/// Entry point shared by the five macros.
pub fn expand(kind: MacroKind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr_span = attr_span(&attr);
    let args = syn::parse2::<RawArgs>(attr).and_then(|raw| Args::validate(kind, raw));
    // An item that is not a fully parsed fn is, in order: a fn whose body syn cannot parse (wrapped
    // as is), a fn whose signature syn cannot parse (syn's error), or not a fn with a body.
    let item_fn = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(e) => match fn_with_unparsed_body(item.clone()) {
            Ok(f) => f,
            Err(_) if starts_like_fn(&item) && !is_bodiless_fn(&item) => {
                return with_error(item, e)
            }
            Err(_) => return not_a_fn(kind, item),
        },
    };
    let args = match args.and_then(|a| a.check_required(attr_span).map(|()| a)) {
        Ok(a) => a,
        Err(e) => return with_error(item, e),
    };
    if let Some(c) = &item_fn.sig.constness {
        let e = syn::Error::new_spanned(
            c,
            format!(
                "`#[{}]` cannot time a `const fn`; remove `const` or the attribute",
                kind.attr_name()
            ),
        );
        return with_error(item, e);
    }
    // perfmon-runtime's feature `off`: the fn unchanged (its attribute still checked above)
    if cfg!(feature = "off") {
        return item;
    }
    wrap(&args, item_fn)
}

/// Missing arguments are reported on the whole attribute.
fn attr_span(_attr: &TokenStream) -> Span {
    Span::call_site()
}

/// The user's item unchanged, plus the error: callers and the IDE keep working.
fn with_error(item: TokenStream, e: syn::Error) -> TokenStream {
    let err = e.to_compile_error();
    quote!(#item #err)
}

/// A fn whose body syn cannot parse, with the body kept as tokens, as tracing-attributes does.
///
/// rustc has already reported the syntax error when it parsed the item, and reports it once more,
/// deduplicated, when it parses the expansion, so the macro adds no error of its own: it wraps the
/// body as usual, and a body that rustc accepts but syn does not (new or unstable syntax) is still
/// timed. Only the `#[async_trait]` shape goes undetected, which needs the parsed statements (and
/// `#[async_trait]` itself parses the body with syn first).
fn fn_with_unparsed_body(item: TokenStream) -> syn::Result<ItemFn> {
    use syn::parse::{ParseStream, Parser};
    let parser = |input: ParseStream| -> syn::Result<ItemFn> {
        let mut attrs = input.call(syn::Attribute::parse_outer)?;
        let vis: syn::Visibility = input.parse()?;
        let sig: syn::Signature = input.parse()?;
        let content;
        let brace_token = syn::braced!(content in input);
        attrs.extend(content.call(syn::Attribute::parse_inner)?);
        let body: TokenStream = content.parse()?;
        Ok(ItemFn {
            attrs,
            vis,
            sig,
            block: Box::new(syn::Block {
                brace_token,
                stmts: vec![Stmt::Expr(Expr::Verbatim(body), None)],
            }),
        })
    };
    parser.parse2(item)
}

/// A fn declaration ending in `;`, such as a trait method without a default body.
fn is_bodiless_fn(item: &TokenStream) -> bool {
    matches!(syn::parse2::<syn::TraitItemFn>(item.clone()), Ok(f) if f.default.is_none())
}

/// Whether the item is a fn by its start: attributes, visibility, the qualifiers an `ItemFn` takes
/// (`const`, `async`, `unsafe`, `extern "abi"`) and the `fn` keyword; the rest is not looked at.
/// Such an item that does not parse has a syntax error in its signature: syn's error is reported,
/// on the offending token, as the macro cannot expand without the signature (rustc usually reports
/// the same mistake in its own words too; without the macro's error, a signature only syn rejects
/// would leave the fn silently untimed).
fn starts_like_fn(item: &TokenStream) -> bool {
    use syn::parse::{ParseStream, Parser};
    let parser = |input: ParseStream| -> syn::Result<bool> {
        input.call(syn::Attribute::parse_outer)?;
        input.parse::<syn::Visibility>()?;
        input.parse::<Option<syn::Token![const]>>()?;
        input.parse::<Option<syn::Token![async]>>()?;
        input.parse::<Option<syn::Token![unsafe]>>()?;
        input.parse::<Option<syn::Abi>>()?;
        let is_fn = input.peek(syn::Token![fn]);
        input.parse::<TokenStream>()?;
        Ok(is_fn)
    };
    parser.parse2(item.clone()).unwrap_or(false)
}

fn not_a_fn(kind: MacroKind, item: TokenStream) -> TokenStream {
    let attr = kind.attr_name();
    // Point at the item's keyword (`struct`, `impl`, ...) or, for a bodiless trait method, the `;`.
    let (span_tokens, msg) = match syn::parse2::<syn::TraitItemFn>(item.clone()) {
        Ok(f) if f.default.is_none() => (
            f.semi_token
                .map(|s| s.into_token_stream())
                .unwrap_or_else(|| f.sig.ident.to_token_stream()),
            format!(
                "`#[{attr}]` needs a fn with a body; put it on the fn in the `impl` block instead"
            ),
        ),
        _ => {
            let first = item
                .clone()
                .into_iter()
                .find(|t| !matches!(t, proc_macro2::TokenTree::Punct(p) if p.as_char() == '#'));
            let first = first.map(|t| t.into_token_stream()).unwrap_or_default();
            (
                first,
                format!("`#[{attr}]` can only be applied to functions: fn items, methods and fns in trait impls"),
            )
        }
    };
    let e = syn::Error::new_spanned(span_tokens, msg);
    with_error(item, e)
}

fn lit(s: &str) -> syn::LitStr {
    syn::LitStr::new(s, Span::call_site())
}

/// The `static` metadata of one call site.
fn meta_init(args: &Args, krate: &TokenStream, fn_name: &str) -> TokenStream {
    let fn_name_lit = lit(fn_name);
    match args.kind {
        MacroKind::Api => {
            let method = lit(args.method.as_deref().unwrap_or("ANY"));
            let slow = args.slow_ns.unwrap_or(DEFAULT_API_SLOW_NS);
            let (route, explicit) = match &args.path {
                Some(p) => {
                    let p = lit(p);
                    (quote!(#p), true)
                }
                None => (
                    quote!(::core::concat!(::core::module_path!(), "::", #fn_name_lit)),
                    false,
                ),
            };
            // 0: the configured Apdex threshold
            let apdex = args.apdex_ns.unwrap_or(0);
            quote!(#krate::__private::Meta::api(#method, #route, #explicit, #slow).with_apdex(#apdex))
        }
        MacroKind::Query => {
            let table = lit(args.table.as_deref().unwrap_or_default());
            let op = lit(args.op.as_deref().unwrap_or(fn_name));
            let write = matches!(args.query_kind, Some(QueryKind::Write));
            let slow = args.slow_ns.unwrap_or(DEFAULT_QUERY_SLOW_NS);
            quote!(#krate::__private::Meta::query(#table, #op, #write, #slow))
        }
        MacroKind::Batch => {
            let name = lit(args.name.as_deref().unwrap_or_default());
            quote!(#krate::__private::Meta::batch(#name))
        }
        MacroKind::Cache => {
            let key = lit(args.key.as_deref().unwrap_or_default());
            quote!(#krate::__private::Meta::cache(#key))
        }
        MacroKind::Measure => {
            let name = lit(args.name.as_deref().unwrap_or_default());
            let threshold = args.slow_ns.unwrap_or(u64::MAX);
            quote!(#krate::__private::Meta::measure(#name, #threshold))
        }
    }
}

/// How the guard is finished, given `__perfmon_ret`.
fn finish(kind: MacroKind, krate: &TokenStream, ret_span: Span) -> TokenStream {
    match kind {
        MacroKind::Api => quote! {
            __perfmon_guard.finish_api({
                #[allow(unused_imports)]
                use #krate::__private::status::{ViaAny as _, ViaHttpStatus as _, ViaResult as _, ViaResultErr as _, ViaResultOk as _};
                (&&&&&#krate::__private::status::Probe(&__perfmon_ret)).__perfmon_status()
            });
        },
        MacroKind::Query => quote! {
            __perfmon_guard.finish_query({
                #[allow(unused_imports)]
                use #krate::__private::status::{OutcomeAny as _, OutcomeResult as _};
                (&&#krate::__private::status::Probe(&__perfmon_ret)).__perfmon_outcome()
            });
        },
        MacroKind::Batch => quote! {
            __perfmon_guard.finish({
                #[allow(unused_imports)]
                use #krate::__private::status::{OutcomeAny as _, OutcomeResult as _};
                (&&#krate::__private::status::Probe(&__perfmon_ret)).__perfmon_outcome()
            });
        },
        // Spanned on the return type, so a wrong one is reported there.
        MacroKind::Cache => quote_spanned! {ret_span=>
            __perfmon_guard.finish(#krate::__private::status::cache_outcome(&__perfmon_ret));
        },
        MacroKind::Measure => quote! {
            __perfmon_guard.finish_measure();
        },
    }
}

/// The return type as a type hint: `impl Trait` becomes `_`, which closures and `None::<..>` accept.
fn ret_hint(output: &ReturnType) -> Type {
    match output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => {
            let mut ty = (**ty).clone();
            ImplToInfer.visit_type_mut(&mut ty);
            ty
        }
    }
}

struct ImplToInfer;

impl VisitMut for ImplToInfer {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(it) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: syn::Token![_](it.impl_token.span),
            });
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// Finds `Box::pin(async move { .. })` as the tail of an `#[async_trait]`-expanded method.
fn async_trait_block(block: &mut syn::Block) -> Option<&mut syn::ExprAsync> {
    let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last_mut() else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    let segs: Vec<String> = func
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let is_box_pin =
        segs.len() >= 2 && segs[segs.len() - 1] == "pin" && segs[segs.len() - 2] == "Box";
    if !is_box_pin || call.args.len() != 1 {
        return None;
    }
    match call.args.first_mut() {
        Some(Expr::Async(a)) if a.capture.is_some() => Some(a),
        _ => None,
    }
}

fn wrap(args: &Args, mut f: ItemFn) -> TokenStream {
    let krate = crate_path(args);
    let fn_name = f.sig.ident.to_string();
    let meta = meta_init(args, &krate, &fn_name);
    let ret_span = match &f.sig.output {
        ReturnType::Default => f.sig.ident.span(),
        ReturnType::Type(_, ty) => syn::spanned::Spanned::span(&**ty),
    };
    let finish = finish(args.kind, &krate, ret_span);
    let span = f.sig.ident.span();
    let prologue = quote_spanned! {span=>
        static __PERFMON_META: #krate::__private::Meta = #meta;
        let __perfmon_guard = #krate::__private::Guard::start(&__PERFMON_META);
    };

    if f.sig.asyncness.is_some() {
        let hint = ret_hint(&f.sig.output);
        let block = &f.block;
        let body = quote! {
            #prologue
            let __perfmon_ret = async move {
                #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::needless_return)]
                if let ::core::option::Option::Some(__perfmon_r) = ::core::option::Option::None::<#hint> {
                    return __perfmon_r;
                }
                #block
            }
            .await;
            #finish
            __perfmon_ret
        };
        f.block = Box::new(unparsed_block(body));
        return f.into_token_stream();
    }

    if let Some(inner) = async_trait_block(&mut f.block) {
        let inner_block = &inner.block;
        let new_block = quote! {{
            #prologue
            let __perfmon_ret = async move #inner_block.await;
            #finish
            __perfmon_ret
        }};
        inner.block = syn::parse2(new_block).expect("generated block parses");
        return f.into_token_stream();
    }

    let hint = ret_hint(&f.sig.output);
    let block = &f.block;
    let body = quote! {
        #prologue
        // Called through an `FnOnce` bound so that captured references can be returned.
        #[allow(clippy::needless_return)]
        let __perfmon_ret = #krate::__private::call_once(move || -> #hint #block);
        #finish
        __perfmon_ret
    };
    f.block = Box::new(unparsed_block(body));
    f.into_token_stream()
}

/// The generated statements as the fn's block, without parsing them again: the user's body among
/// them may be tokens that syn does not parse (see `fn_with_unparsed_body`).
fn unparsed_block(stmts: TokenStream) -> syn::Block {
    syn::Block {
        brace_token: syn::token::Brace::default(),
        stmts: vec![Stmt::Expr(Expr::Verbatim(stmts), None)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: MacroKind, attr: TokenStream) -> Args {
        syn::parse2::<RawArgs>(attr)
            .and_then(|raw| Args::validate(kind, raw))
            .expect("valid arguments")
    }

    /// A body kept as tokens expands exactly as the parsed body does, inner attributes included.
    #[test]
    fn unparsed_body_expands_like_parsed_body() {
        let cases = [
            (
                MacroKind::Api,
                quote!(method = "GET"),
                quote! {
                    fn a(x: u32) -> u32 {
                        #![allow(unused_mut)]
                        let mut y = x + 1;
                        y
                    }
                },
            ),
            (
                MacroKind::Query,
                quote!(table = "Staff", kind = "read"),
                quote! {
                    pub async fn b(s: &str) -> Result<Option<u32>, String> {
                        Ok(s.parse().ok())
                    }
                },
            ),
            (
                MacroKind::Measure,
                quote!("c"),
                quote! {
                    #[inline]
                    fn c<'a>(v: &'a [u32]) -> impl Iterator<Item = &'a u32> + 'a {
                        v.iter()
                    }
                },
            ),
            (
                MacroKind::Cache,
                quote!(key = "d"),
                quote! {
                    async fn d() -> Option<u32> {
                        return None;
                    }
                },
            ),
        ];
        for (kind, attr, item) in cases {
            let args = args(kind, attr);
            let parsed = syn::parse2::<ItemFn>(item.clone()).expect("the fn parses");
            let unparsed = fn_with_unparsed_body(item).expect("the signature parses");
            assert_eq!(
                wrap(&args, parsed).to_string(),
                wrap(&args, unparsed).to_string()
            );
        }
    }

    #[test]
    fn fn_by_its_start() {
        for item in [
            quote! { fn f() {} },
            quote! { #[doc = "x"] pub(crate) const async unsafe extern "C" fn f() {} },
            quote! { fn f(x: ) {} },
            quote! { fn f() -> u32 { 1 + } },
        ] {
            assert!(starts_like_fn(&item), "{item}");
        }
        for item in [
            quote! { struct S; },
            quote! { impl S { fn f() {} } },
            quote! { type F = fn(); },
            quote! { const F: fn() = f; },
            quote! { extern "C" { fn f(); } },
            quote! { unsafe impl Send for S {} },
        ] {
            assert!(!starts_like_fn(&item), "{item}");
        }
    }
}
