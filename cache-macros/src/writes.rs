//! The write methods of a `#[cache_service]`: `#[cache_evict]` and
//! `#[cache_put]`, parsed and wrapped around the method's body.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, ImplItemFn, LitStr, Meta, Pat, Type};

use crate::template::{self, Segment};

#[derive(Default)]
pub(crate) struct EvictArgs {
    keys: Vec<LitStr>,
    patterns: Vec<LitStr>,
    tags: Vec<LitStr>,
    all: bool,
    before: bool,
    span: Option<Span>,
}

/// A cached action that `#[cache_put]` can store into.
pub(crate) struct Target {
    pub(crate) method: Ident,
    /// Its key arguments.
    pub(crate) params: Vec<(Ident, Type)>,
    pub(crate) ret: Type,
    /// What its cache holds when not the whole return type (`T` of a
    /// `Result<T, E>` whose errors are not cached).
    pub(crate) stored: Option<Type>,
}

pub(crate) struct PutArgs {
    pub(crate) action: Ident,
    span: Span,
}

fn lit_list(meta: &ParseNestedMeta, what: &str) -> syn::Result<Vec<LitStr>> {
    let example = match what {
        "patterns" => "get_user:*",
        "tags" => "user:{id}",
        _ => "get_user:{id}",
    };
    crate::args::templates(
        meta,
        what,
        &format!("a list of string templates, such as `{what} = [\"{example}\"]`"),
        &format!("each of `{what}` is a string template, such as \"{example}\""),
    )
}

pub(crate) fn parse_evict(attr: &Attribute) -> syn::Result<EvictArgs> {
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

pub(crate) fn parse_put(attr: &Attribute) -> syn::Result<PutArgs> {
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

pub(crate) fn wrap_evict(
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

pub(crate) fn wrap_put(
    m: &ImplItemFn,
    p: &PutArgs,
    t: &Target,
) -> syn::Result<(ImplItemFn, ImplItemFn)> {
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
                #[allow(clippy::clone_on_copy)]
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
