//! Expansion of `#[cache_service]`: an impl block's cached actions become
//! one service, with `#[cache_evict]` and `#[cache_put]` on its write methods.

use std::collections::BTreeMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Attribute, ImplItem, ImplItemFn, ItemFn, ItemImpl, LitStr, Meta, Type};

use crate::args::CachedArgs;
use crate::expand;
use crate::plan::Plan;
use crate::writes::{EvictArgs, PutArgs, Target, parse_evict, parse_put, wrap_evict, wrap_put};

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
    /// `#[cached(...)]` or `#[action(cache(...))]`: the options.
    Cached(TokenStream),
    Evict(EvictArgs),
    Put(PutArgs),
}

/// A method's role, with a cached action's plan made.
enum Planned {
    Cached(Box<Plan>),
    Evict(EvictArgs),
    Put(PutArgs),
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
            Some("cached") => {
                markers.push(marker(&attr));
                Some(Role::Cached(attr_tokens(&attr)))
            }
            Some("action") => {
                markers.push(marker(&attr));
                parse_action(&attr)?.map(Role::Cached)
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

    // First pass: each method's role, and the plan of each cached action.
    let mut roles = Vec::new();
    let mut actions: BTreeMap<String, Target> = BTreeMap::new();
    for it in item.items.iter_mut() {
        let ImplItem::Fn(m) = it else {
            roles.push(None);
            continue;
        };
        let role = match role_of(m)? {
            Some(Role::Cached(tokens)) => {
                let cargs = syn::parse::Parser::parse2(CachedArgs::parser(), tokens)?;
                let plan = Plan::new(cargs, as_item_fn(m), Some(service_lit.clone()))?;
                actions.insert(
                    plan.action.clone(),
                    Target {
                        method: m.sig.ident.clone(),
                        params: plan.key_params(),
                        ret: plan.ret.clone(),
                        stored: plan.stored.as_ref().map(|(ok, _)| ok.clone()),
                    },
                );
                Some(Planned::Cached(Box::new(plan)))
            }
            Some(Role::Evict(e)) => Some(Planned::Evict(e)),
            Some(Role::Put(p)) => Some(Planned::Put(p)),
            None => None,
        };
        roles.push(role);
    }

    // Second pass: rewrite.
    let mut extra = Vec::new();
    let mut companions = Vec::new();
    for (it, role) in item.items.iter_mut().zip(roles) {
        let Some(role) = role else { continue };
        let ImplItem::Fn(m) = it else { continue };
        match role {
            Planned::Cached(plan) => {
                companions.push(format_ident!("{}_cache", m.sig.ident));
                *it = ImplItem::Verbatim(expand::expand(&plan));
            }
            Planned::Evict(e) => {
                let (wrapper, inner) = wrap_evict(m, &e, &service_lit)?;
                *m = wrapper;
                extra.push(inner);
            }
            Planned::Put(p) => {
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
    // The consumed attributes stay on their methods as inert markers under
    // the paths the user wrote (so an import of them counts as used); this
    // resolves those paths when nothing was imported.
    let attributes = quote! {
        #[allow(unused_imports)]
        use ::cache_core::attributes::*;
    };
    Ok(quote!(#attributes #item #register))
}
