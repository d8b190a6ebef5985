//! Expansion of `#[cache_service]`: an impl block's cached actions become
//! one service, with `#[cache_evict]` and `#[cache_put]` on its write methods.

use std::collections::BTreeMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprArray, FnArg, Ident, ImplItem, ImplItemFn, ItemFn, ItemImpl, Lit, LitStr,
    Meta, Pat, Type,
};

use crate::args::CachedArgs;
use crate::expand;
use crate::template::{self, Segment};

/// Parsed `#[cache_service(...)]` options.
#[derive(Default)]
pub struct ServiceArgs {
    name: Option<LitStr>,
}

impl ServiceArgs {
    pub fn parser() -> impl Parser<Output = ServiceArgs> {
        |input: syn::parse::ParseStream| {
            let mut out = ServiceArgs::default();
            let p = syn::meta::parser(|meta| {
                if meta.path.is_ident("name") {
                    if out.name.is_some() {
                        return Err(meta.error("duplicate option `name`; give it once"));
                    }
                    let s: LitStr = meta.value()?.parse().map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            "`name` takes a string, such as `name = \"user\"`",
                        )
                    })?;
                    check_name(&s)?;
                    out.name = Some(s);
                    Ok(())
                } else {
                    Err(meta.error("unknown option; #[cache_service] takes `name = \"...\"`"))
                }
            });
            p.parse2(input.parse()?)?;
            Ok(out)
        }
    }
}

fn check_name(s: &LitStr) -> syn::Result<()> {
    let v = s.value();
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(syn::Error::new(
            s.span(),
            "a service name must be non-empty and use only ASCII letters, digits, `_`, `-` and `.` (it is a path segment)",
        ))
    }
}

/// Which cache attribute a method carries.
enum Role {
    /// `#[cached(...)]` or `#[action(cache(...))]`: the attribute's
    /// arguments, and the path of the `cached` attribute to expand them.
    Cached(TokenStream, syn::Path, Span),
    Evict(EvictArgs),
    Put(PutArgs),
}

#[derive(Default)]
struct EvictArgs {
    keys: Vec<LitStr>,
    patterns: Vec<LitStr>,
    tags: Vec<LitStr>,
    all: bool,
    before: bool,
    span: Option<Span>,
}

/// A cached action that `#[cache_put]` can store into.
struct Target {
    method: Ident,
    /// Its key arguments.
    params: Vec<(Ident, Type)>,
    ret: Type,
    /// What its cache holds when not the whole return type (`T` of a
    /// `Result<T, E>` whose errors are not cached).
    stored: Option<Type>,
}

struct PutArgs {
    action: Ident,
    span: Span,
}

fn last_ident(attr: &Attribute) -> Option<String> {
    attr.path().segments.last().map(|s| s.ident.to_string())
}

fn attr_tokens(attr: &Attribute) -> TokenStream {
    match &attr.meta {
        Meta::List(l) => l.tokens.clone(),
        _ => TokenStream::new(),
    }
}

/// Reads `#[action]`, `#[action(cache)]` or `#[action(cache(...))]`.
fn parse_action(attr: &Attribute) -> syn::Result<Option<TokenStream>> {
    let Meta::List(list) = &attr.meta else {
        return Ok(None);
    };
    let mut cache = None;
    list.parse_nested_meta(|meta| {
        if meta.path.is_ident("cache") {
            if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                cache = Some(content.parse::<TokenStream>()?);
            } else {
                cache = Some(TokenStream::new());
            }
            Ok(())
        } else {
            Err(meta.error("#[action] takes `cache(...)` with the options of #[cached], such as `#[action(cache(ttl = 60))]`"))
        }
    })?;
    Ok(cache)
}

fn lit_list(meta: &ParseNestedMeta, what: &str) -> syn::Result<Vec<LitStr>> {
    let arr: ExprArray = meta.value()?.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{what}` takes a list of strings, such as `{what} = [\"get_user:{{id}}\"]`"),
        )
    })?;
    arr.elems
        .into_iter()
        .map(|e| match e {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) => Ok(s),
            other => Err(syn::Error::new_spanned(
                other,
                format!("each of `{what}` is a string template"),
            )),
        })
        .collect()
}

fn parse_evict(attr: &Attribute) -> syn::Result<EvictArgs> {
    let mut a = EvictArgs {
        span: Some(attr.path().span()),
        ..Default::default()
    };
    let Meta::List(list) = &attr.meta else {
        return Err(syn::Error::new(
            attr.span(),
            "#[cache_evict] needs what to evict: `keys = [...]`, `patterns = [...]`, `tags = [...]` or `all`",
        ));
    };
    list.parse_nested_meta(|meta| {
        let flag = |meta: &ParseNestedMeta| -> syn::Result<bool> {
            if meta.input.peek(syn::Token![=]) {
                Ok(meta.value()?.parse::<syn::LitBool>()?.value)
            } else {
                Ok(true)
            }
        };
        match meta.path.get_ident().map(|i| i.to_string()).as_deref() {
            Some("keys") => a.keys = lit_list(&meta, "keys")?,
            Some("patterns") => a.patterns = lit_list(&meta, "patterns")?,
            Some("tags") => a.tags = lit_list(&meta, "tags")?,
            Some("all") => a.all = flag(&meta)?,
            Some("before") => a.before = flag(&meta)?,
            _ => {
                return Err(meta.error(
                    "unknown option; #[cache_evict] takes keys, patterns, tags, all and before",
                ));
            }
        }
        Ok(())
    })?;
    if a.keys.is_empty() && a.patterns.is_empty() && a.tags.is_empty() && !a.all {
        return Err(syn::Error::new(
            attr.path().span(),
            "#[cache_evict] evicts nothing: give `keys = [...]`, `patterns = [...]`, `tags = [...]` or `all`",
        ));
    }
    Ok(a)
}

fn parse_put(attr: &Attribute) -> syn::Result<PutArgs> {
    let err = || {
        syn::Error::new(
            attr.span(),
            "#[cache_put] names the cached action to store into, such as `#[cache_put(get_user)]`",
        )
    };
    let Meta::List(list) = &attr.meta else {
        return Err(err());
    };
    let action: Ident = syn::parse2(list.tokens.clone()).map_err(|_| err())?;
    Ok(PutArgs {
        span: action.span(),
        action,
    })
}

/// An inert copy of a consumed attribute, under the path the user wrote, so
/// their import of it counts as used.
fn marker(attr: &Attribute) -> Attribute {
    let path = attr.path();
    syn::parse_quote_spanned!(attr.span()=> #[#path(__consumed)])
}

fn role_of(m: &mut ImplItemFn) -> syn::Result<Option<Role>> {
    let mut role = None;
    let mut markers = Vec::new();
    let mut keep = Vec::new();
    for attr in std::mem::take(&mut m.attrs) {
        let found = match last_ident(&attr).as_deref() {
            Some("cached") => Some(Role::Cached(
                attr_tokens(&attr),
                attr.path().clone(),
                attr.span(),
            )),
            Some("action") => {
                markers.push(marker(&attr));
                parse_action(&attr)?
                    .map(|t| Role::Cached(t, syn::parse_quote!(::cache_core::cached), attr.span()))
            }
            Some("cache_evict") => {
                markers.push(marker(&attr));
                Some(Role::Evict(parse_evict(&attr)?))
            }
            Some("cache_put") => {
                markers.push(marker(&attr));
                Some(Role::Put(parse_put(&attr)?))
            }
            _ => {
                keep.push(attr);
                continue;
            }
        };
        if let Some(r) = found {
            if role.is_some() {
                return Err(syn::Error::new(
                    attr.path().span(),
                    "a method takes one of #[cached], #[action(cache(...))], #[cache_evict] and #[cache_put]",
                ));
            }
            role = Some(r);
        }
    }
    markers.extend(keep);
    m.attrs = markers;
    Ok(role)
}

/// The impl with every cache attribute of its methods made inert.
pub fn strip_roles(mut item: ItemImpl) -> ItemImpl {
    for it in item.items.iter_mut() {
        if let ImplItem::Fn(m) = it {
            for a in m.attrs.iter_mut() {
                if matches!(
                    last_ident(a).as_deref(),
                    Some("cached" | "action" | "cache_evict" | "cache_put")
                ) {
                    *a = marker(a);
                }
            }
        }
    }
    item
}

fn as_item_fn(m: &ImplItemFn) -> ItemFn {
    ItemFn {
        attrs: m.attrs.clone(),
        vis: m.vis.clone(),
        sig: m.sig.clone(),
        block: Box::new(m.block.clone()),
    }
}

fn snake_case(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn expand(args: ServiceArgs, mut item: ItemImpl) -> syn::Result<TokenStream> {
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[cache_service] goes on an inherent impl block (`impl UserService { ... }`), not a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "#[cache_service] cannot go on a generic impl: each action's cache is one static with concrete types",
        ));
    }
    let self_ty = item.self_ty.clone();
    let service = match &args.name {
        Some(n) => n.value(),
        None => match &*self_ty {
            Type::Path(p) => snake_case(&p.path.segments.last().expect("a path").ident.to_string()),
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "name the service: #[cache_service(name = \"...\")]",
                ));
            }
        },
    };
    let service_lit = LitStr::new(&service, Span::call_site());

    // First pass: each method's role; the cached actions by name.
    let mut roles = Vec::new();
    let mut actions: BTreeMap<String, Target> = BTreeMap::new();
    for it in item.items.iter_mut() {
        let ImplItem::Fn(m) = it else {
            roles.push(None);
            continue;
        };
        let role = role_of(m)?;
        if let Some(Role::Cached(tokens, _, _)) = &role {
            let cargs = syn::parse::Parser::parse2(CachedArgs::parser(), tokens.clone())?;
            let f = as_item_fn(m);
            let action = expand::action_name(&cargs, &m.sig.ident);
            let params = expand::key_params(&cargs, &f)?;
            let ret = match &m.sig.output {
                syn::ReturnType::Type(_, t) => (**t).clone(),
                syn::ReturnType::Default => syn::parse_quote!(()),
            };
            let stored = expand::stored_type(&cargs, &ret).map(|(ok, _)| ok);
            actions.insert(
                action,
                Target {
                    method: m.sig.ident.clone(),
                    params,
                    ret,
                    stored,
                },
            );
        }
        roles.push(role);
    }

    // Second pass: rewrite.
    let mut extra = Vec::new();
    let mut companions = Vec::new();
    for (it, role) in item.items.iter_mut().zip(roles) {
        let (ImplItem::Fn(m), Some(role)) = (it, role) else {
            continue;
        };
        match role {
            Role::Cached(tokens, path, span) => {
                let sep = (!tokens.is_empty()).then(|| quote!(,));
                let attr: Attribute = syn::parse_quote_spanned!(span=>
                    #[#path(__service = #service_lit #sep #tokens)]
                );
                // After the markers, which pass the method through untouched.
                let at = m.attrs.iter().take_while(|a| is_marker(a)).count();
                m.attrs.insert(at, attr);
                companions.push(format_ident!("{}_cache", m.sig.ident));
            }
            Role::Evict(e) => {
                let (wrapper, inner) = wrap_evict(m, &e, &service_lit)?;
                *m = wrapper;
                extra.push(inner);
            }
            Role::Put(p) => {
                let Some(target) = actions.get(&p.action.to_string()) else {
                    let known: Vec<&str> = actions.keys().map(String::as_str).collect();
                    return Err(syn::Error::new(
                        p.action.span(),
                        format!(
                            "no cached action `{}` in this service; its actions are: {}",
                            p.action,
                            if known.is_empty() {
                                "(none)".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                };
                let (wrapper, inner) = wrap_put(m, &p, target)?;
                *m = wrapper;
                extra.push(inner);
            }
        }
    }
    item.items.extend(extra.into_iter().map(ImplItem::Fn));

    let register = quote! {
        ::cache_core::__private::inventory::submit! {
            ::cache_core::__private::ServiceInit {
                service: #service_lit,
                init: || {
                    #( let _ = <#self_ty>::#companions(); )*
                },
            }
        }
    };
    Ok(quote!(#item #register))
}

fn is_marker(a: &Attribute) -> bool {
    matches!(&a.meta, Meta::List(l) if l.tokens.to_string() == "__consumed")
}

/// Whether the result in `__r` counts as success: anything but an `Err`,
/// decided where its type is concrete.
fn succeeded() -> TokenStream {
    quote!({
        #[allow(unused_imports)]
        use ::cache_core::__private::{ProbeOption as _, ProbePlain as _, ProbeResult as _};
        (&::cache_core::__private::Probe(&__r)).outcome() != ::cache_core::__private::Outcome::Err
    })
}

/// The method's typed arguments: names, and whether each is a plain binding.
fn arg_idents(m: &ImplItemFn) -> syn::Result<Vec<Ident>> {
    m.sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(pt) => Some(pt),
            FnArg::Receiver(_) => None,
        })
        .map(|pt| match &*pt.pat {
            Pat::Ident(pi) if pi.subpat.is_none() => Ok(pi.ident.clone()),
            other => Err(syn::Error::new(
                other.span(),
                "a method with #[cache_evict] or #[cache_put] needs a plain name for each argument",
            )),
        })
        .collect()
}

/// Splits a method into a wrapper with its signature and a hidden sibling
/// with its body; returns both and how the wrapper calls the sibling.
fn split(m: &ImplItemFn, prefix: &str) -> syn::Result<(ImplItemFn, ImplItemFn, TokenStream)> {
    let args = arg_idents(m)?;
    let inner_name = format_ident!("__cache_{}_{}", prefix, m.sig.ident);
    let mut inner = m.clone();
    inner.sig.ident = inner_name.clone();
    inner.vis = syn::Visibility::Inherited;
    inner.attrs = m
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("allow") && !is_marker(a))
        .cloned()
        .collect();
    inner.attrs.push(syn::parse_quote!(#[doc(hidden)]));
    let has_self = matches!(m.sig.inputs.first(), Some(FnArg::Receiver(_)));
    let call = if has_self {
        quote!(Self::#inner_name(self, #(#args),*))
    } else {
        quote!(Self::#inner_name(#(#args),*))
    };
    let call = if m.sig.asyncness.is_some() {
        quote!(#call.await)
    } else {
        call
    };
    let mut wrapper = m.clone();
    for input in wrapper.sig.inputs.iter_mut() {
        if let FnArg::Typed(pt) = input
            && let Pat::Ident(pi) = &mut *pt.pat
        {
            pi.mutability = None;
        }
    }
    Ok((wrapper, inner, call))
}

/// Renders a template over the method's arguments, at call time, before the
/// body can move them. Patterns escape argument text so it matches itself.
fn render(
    lit: &LitStr,
    names: &[String],
    idents: &[Ident],
    escape: bool,
    what: &str,
) -> syn::Result<TokenStream> {
    let segs = template::parse(lit, names, what)?;
    let steps = segs.iter().map(|s| match s {
        Segment::Text(t) => quote!(__out.push_str(#t);),
        Segment::Arg(i) | Segment::SepArg(i) => {
            let id = &idents[*i];
            if escape {
                quote!({
                    let mut __part = ::std::string::String::new();
                    (&&::cache_core::__private::KeyArg(&#id)).write_arg(&mut __part);
                    ::cache_core::__private::push_glob_escaped(__out, &__part);
                })
            } else {
                quote!((&&::cache_core::__private::KeyArg(&#id)).write_arg(__out);)
            }
        }
    });
    Ok(quote!({
        #[allow(unused_imports)]
        use ::cache_core::__private::{ViaHash as _, ViaKeyPart as _, ViaSerialize as _};
        let mut __s = ::std::string::String::new();
        let __out = &mut __s;
        #(#steps)*
        __s
    }))
}

fn wrap_evict(
    m: &ImplItemFn,
    e: &EvictArgs,
    service: &LitStr,
) -> syn::Result<(ImplItemFn, ImplItemFn)> {
    let (mut wrapper, inner, call) = split(m, "evict")?;
    let idents = arg_idents(m)?;
    let names: Vec<String> = idents.iter().map(|i| i.to_string()).collect();
    let keys = e
        .keys
        .iter()
        .map(|l| render(l, &names, &idents, false, "key"))
        .collect::<syn::Result<Vec<_>>>()?;
    let patterns = e
        .patterns
        .iter()
        .map(|l| render(l, &names, &idents, true, "pattern"))
        .collect::<syn::Result<Vec<_>>>()?;
    let tags = e
        .tags
        .iter()
        .map(|l| render(l, &names, &idents, false, "tag"))
        .collect::<syn::Result<Vec<_>>>()?;
    let all = e.all;
    let span = e.span.unwrap_or_else(Span::call_site);
    let plan = quote_spanned! {span=>
        let __plan = ::cache_core::__private::EvictPlan {
            service: #service,
            keys: ::std::vec![#(#keys),*],
            patterns: ::std::vec![#(#patterns),*],
            tags: ::std::vec![#(#tags),*],
            all: #all,
        };
    };
    let ok = succeeded();
    let body = if e.before {
        quote!({
            #plan
            __plan.run();
            #call
        })
    } else {
        quote!({
            #plan
            let __r = #call;
            if #ok {
                __plan.run();
            }
            __r
        })
    };
    wrapper.block = syn::parse2(body)?;
    Ok((wrapper, inner))
}

fn wrap_put(m: &ImplItemFn, p: &PutArgs, t: &Target) -> syn::Result<(ImplItemFn, ImplItemFn)> {
    let (target, params, ret) = (&t.method, &t.params, &t.ret);
    let (mut wrapper, inner, call) = split(m, "put")?;
    let idents = arg_idents(m)?;
    let mut pass = Vec::new();
    for (name, ty) in params {
        if !idents.iter().any(|i| i == name) {
            return Err(syn::Error::new(
                p.span,
                format!(
                    "#[cache_put({target})] needs an argument named `{name}`: {target}'s key is built from it"
                ),
            ));
        }
        pass.push(if matches!(ty, Type::Reference(_)) {
            quote!(&#name)
        } else {
            quote!(::std::clone::Clone::clone(&#name))
        });
    }
    let key_fn = format_ident!("__cache_key_{}", target);
    let companion = format_ident!("{}_cache", target);
    let ok = succeeded();
    let store = match &t.stored {
        Some(_) => quote_spanned! {p.span=>
            // The result must have the type the action returns; its `Ok`
            // value is what the action caches.
            let __value: &#ret = &__r;
            if let ::std::result::Result::Ok(__v) = __value {
                Self::#companion().__put(__key, ::std::clone::Clone::clone(__v));
            }
        },
        None => quote_spanned! {p.span=>
            if #ok {
                // The result must have the type the action caches.
                let __value: #ret = __r.clone();
                Self::#companion().__put(__key, __value);
            }
        },
    };
    let body = quote!({
        let __key = Self::#key_fn(#(#pass),*);
        let __r = #call;
        #store
        __r
    });
    wrapper.block = syn::parse2(body)?;
    Ok((wrapper, inner))
}
