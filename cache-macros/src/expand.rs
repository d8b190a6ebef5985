//! Expansion of `#[cached]`, in one place for free functions and methods,
//! sync and async.
//!
//! ```text
//! fn get_user(id: u64) -> User { body }
//! ```
//! becomes
//! ```text
//! fn get_user(id: u64) -> User {                // lookup, single-flight, store
//!     let __cache = get_user_cache();
//!     __cache.get_or_insert_with(id.clone(), move || __cached_get_user(id))
//! }
//! fn __cached_get_user(id: u64) -> User { body } // the body, untouched
//! fn get_user_cache() -> &'static Cache<u64, User> { /* one static, built once */ }
//! ```

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::args::CachedArgs;
use crate::template::{self, Segment};

struct Arg {
    ident: Ident,
    ty: Type,
    /// The argument is `&T`: the key holds `T::Owned`.
    by_ref: bool,
    owned: TokenStream,
}

pub fn expand(args: CachedArgs, item: ItemFn) -> syn::Result<TokenStream> {
    let sig = &item.sig;
    check_generics(&item)?;
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new(
            c.span(),
            "#[cached] cannot wrap a `const fn`; remove `const`",
        ));
    }
    let is_method = check_receiver(&item)?;
    let fn_args = collect_args(&item)?;
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.ident.span(),
                "a #[cached] function must return the value to cache; add a return type",
            ));
        }
    };
    check_owned_type(
        &ret,
        "return type",
        "return an owned value, such as `String` instead of `&str`",
    )?;

    let fn_name = &sig.ident;
    let action = action_name(&args, fn_name);
    let names: Vec<String> = fn_args.iter().map(|a| a.ident.to_string()).collect();

    // The key template, and which arguments it names (in signature order).
    let (segments, key_idx) = key_template(&args, &action, &names)?;
    let tag_templates = args
        .tags
        .iter()
        .map(|t| {
            let segs = template::parse(t, &names, "tag")?;
            for s in &segs {
                if let Segment::Arg(i) | Segment::SepArg(i) = s
                    && !key_idx.contains(i)
                {
                    return Err(syn::Error::new(
                        t.span(),
                        format!(
                            "tag names `{{{}}}`, which the key template leaves out; tags are built from the key's arguments",
                            names[*i]
                        ),
                    ));
                }
            }
            Ok(segs)
        })
        .collect::<syn::Result<Vec<_>>>()?;

    // The key type and how generated code reaches each key argument. In a
    // service the key is (tenant, Option<arg>...): configuration's `keys`
    // masks arguments out at runtime, and tenants never share entries.
    let service = args.service.as_ref();
    let key_ty = key_type(&fn_args, &key_idx, service.is_some());
    let access = |arg_index: usize| -> TokenStream {
        let pos = key_idx
            .iter()
            .position(|i| *i == arg_index)
            .expect("arg is in the key");
        if service.is_some() {
            // (tenant, key mask, arguments...)
            let idx = syn::Index::from(pos + 2);
            quote!(&__k.#idx)
        } else if key_idx.len() == 1 {
            quote!(__k)
        } else {
            let idx = syn::Index::from(pos);
            quote!(&__k.#idx)
        }
    };
    let key_expr = key_expr(&fn_args, &key_idx, service.is_some(), &quote!(__cache));
    let write_segments = |segs: &[Segment]| -> TokenStream {
        let steps = segs.iter().map(|s| {
            let (sep, i) = match s {
                Segment::Text(t) => return quote!(__out.push_str(#t);),
                Segment::Arg(i) => (None, *i),
                Segment::SepArg(i) => (Some(':'), *i),
            };
            let acc = access(i);
            let sep = sep.map(|c| quote!(__out.push(#c);));
            if service.is_some() {
                // A masked-out argument leaves no trace, separator included.
                quote!(if let ::std::option::Option::Some(__v) = #acc {
                    #sep
                    (&&::cache_core::__private::KeyArg(__v)).write_arg(__out);
                })
            } else {
                quote!(#sep (&&::cache_core::__private::KeyArg(#acc)).write_arg(__out);)
            }
        });
        quote!(#(#steps)*)
    };
    let render_body = write_segments(&segments);
    let tags_fn = if tag_templates.is_empty() {
        quote!()
    } else {
        let each = tag_templates.iter().map(|segs| {
            let body = write_segments(segs);
            quote!({
                let mut __s = ::std::string::String::new();
                let __out = &mut __s;
                #body
                __s
            })
        });
        quote! {
            .tags({
                #[allow(unused_imports)]
                fn __tags(__k: &#key_ty) -> ::std::vec::Vec<::std::string::String> {
                    use ::cache_core::__private::{ViaHash as _, ViaKeyPart as _, ViaSerialize as _};
                    ::std::vec![#(#each),*]
                }
                __tags
            })
        }
    };

    let cache_errors = args.cache_errors;
    let cache_none = args.cache_none;
    let unless = match &args.unless {
        Some(e) => quote_spanned!(e.span()=> (#e)),
        None => quote!(false),
    };
    let result_ident = Ident::new("result", Span::call_site());
    let ms = |m: Option<crate::args::Millis>| m.map(|m| m.0);
    let ttl =
        ms(args.ttl).map(|v| quote!(.ttl(::cache_core::__private::Duration::from_millis(#v))));
    let tti =
        ms(args.tti).map(|v| quote!(.tti(::cache_core::__private::Duration::from_millis(#v))));
    let refresh_after = ms(args.refresh)
        .map(|v| quote!(.refresh_after(::cache_core::__private::Duration::from_millis(#v))));
    let capacity = args.capacity.map(|c| quote!(.capacity(#c)));
    let service_setup = service.map(|svc| {
        let names = key_idx.iter().map(|i| names[*i].as_str());
        quote! {
            .service(#svc)
            .key_args(&[#(#names),*])
            .tenant_of({
                fn __tenant(__k: &#key_ty) -> ::cache_core::__private::TenantId {
                    __k.0
                }
                __tenant
            })
            .mask_of({
                fn __mask(__k: &#key_ty) -> u64 {
                    __k.1
                }
                __mask
            })
        }
    });
    let enabled_flag = args.enabled;
    let backend = args
        .backend
        .as_ref()
        .map(|b| quote!(.backend(::cache_core::__private::Backend::named(#b))));
    let eviction = args.eviction.map(|e| {
        let variant = match e {
            crate::args::Eviction::Engine => quote!(Engine),
            crate::args::Eviction::Lru => quote!(Lru),
            crate::args::Eviction::Lfu => quote!(Lfu),
        };
        quote!(.eviction(::cache_core::__private::Eviction::#variant))
    });

    // Outside a service, a function named after itself is told apart from
    // another module's namesake by its module path.
    let module_path = (service.is_none() && args.name.is_none())
        .then(|| quote!(.module_path(::core::module_path!())));
    let text_prefix = match (&args.key, key_idx.is_empty()) {
        (Some(_), _) => String::new(),
        (None, true) => action.clone(),
        (None, false) => format!("{action}:"),
    };

    let vis = &item.vis;
    let companion = format_ident!("{}_cache", fn_name);
    let inner_name = format_ident!("__cached_{}", fn_name);
    // What the cache holds: the return type, or `T` of `Result<T, E>`.
    let stored = stored_type(&args, &ret);
    let val = stored
        .as_ref()
        .map_or_else(|| ret.clone(), |(ok, _)| ok.clone());
    // Loads that may fail share the error with their waiters when it is
    // `Clone`, and otherwise leave each waiter to compute.
    let try_load = stored
        .as_ref()
        .map(|(_, err)| quote!((&::cache_core::__private::TryLoad::<_, _, #err>::new(__cache))));
    let cache_ty = quote!(::cache_core::__private::Cache<#key_ty, #val>);
    let companion_doc =
        format!("The cache of `{fn_name}`: invalidate, revoke, list and count its entries.");
    let companion_fn = quote! {
        #[doc = #companion_doc]
        #[allow(dead_code)]
        #vis fn #companion() -> &'static #cache_ty {
            static __CACHE: ::cache_core::__private::OnceLock<#cache_ty> =
                ::cache_core::__private::OnceLock::new();
            __CACHE.get_or_init(|| {
                #[allow(unused_imports)]
                fn __render(__k: &#key_ty, __out: &mut ::std::string::String) {
                    use ::cache_core::__private::{ViaHash as _, ViaKeyPart as _, ViaSerialize as _};
                    #render_body
                }
                #[allow(unused_imports, unused_variables, clippy::nonminimal_bool)]
                fn __store_if(#result_ident: &#val) -> bool {
                    use ::cache_core::__private::{ProbeOption as _, ProbePlain as _, ProbeResult as _};
                    let __o = (&::cache_core::__private::Probe(#result_ident)).outcome();
                    (#cache_errors || __o != ::cache_core::__private::Outcome::Err)
                        && (#cache_none || __o != ::cache_core::__private::Outcome::None)
                        && !#unless
                }
                #[allow(unused_imports)]
                use ::cache_core::__private::{NoSerde as _, ViaSerde as _};
                ::cache_core::__private::CacheBuilder::<#key_ty, #val>::with_render(__render)
                    .name(#action)
                    #module_path
                    .key_text_prefix(#text_prefix)
                    .remote_codec((&::cache_core::__private::CodecProbe::<#val>::new()).remote_codec())
                    .enabled(#enabled_flag)
                    #service_setup
                    #capacity #eviction #ttl #tti #refresh_after #backend
                    .store_if(__store_if)
                    #tags_fn
                    .register(true)
                    .build()
            })
        }
    };

    // The body moves, untouched, into a hidden sibling.
    let allow_attrs = item.attrs.iter().filter(|a| a.path().is_ident("allow"));
    let mut inner_sig = sig.clone();
    inner_sig.ident = inner_name.clone();
    let block = &item.block;
    let inner_fn = quote! {
        #[doc(hidden)]
        #[inline]
        #(#allow_attrs)*
        #inner_sig #block
    };

    // The wrapper keeps the signature (minus `mut` on bindings).
    let mut outer_sig = sig.clone();
    for input in outer_sig.inputs.iter_mut() {
        if let FnArg::Typed(pt) = input
            && let Pat::Ident(pi) = &mut *pt.pat
        {
            pi.mutability = None;
        }
    }
    let attrs = &item.attrs;
    let arg_idents: Vec<&Ident> = fn_args.iter().map(|a| &a.ident).collect();
    let call = if is_method {
        quote!(Self::#inner_name(self, #(#arg_idents),*))
    } else {
        quote!(#inner_name(#(#arg_idents),*))
    };
    let companion_call = if is_method {
        quote!(Self::#companion())
    } else {
        quote!(#companion())
    };
    let asserts = key_idx.iter().map(|i| {
        let a = &fn_args[*i];
        let owned = &a.owned;
        quote_spanned!(a.ty.span()=> ::cache_core::__private::assert_key_arg::<#owned>();)
    });
    let assert_ret = quote_spanned!(val.span()=> ::cache_core::__private::assert_value::<#val>(););
    // A hit gives the stored value; the function returns `Ok` of it.
    let wrap = |v: TokenStream| match &stored {
        Some(_) => quote!(::std::result::Result::Ok(#v)),
        None => v,
    };
    let is_async = sig.asyncness.is_some();

    let refresh = args.refresh.map(|_| {
        let this = is_method.then(|| quote!(let __this = ::std::clone::Clone::clone(self);));
        let owned_lets = fn_args.iter().map(|a| {
            let id = &a.ident;
            let o = format_ident!("__owned_{}", id);
            if a.by_ref {
                quote!(let #o = ::std::borrow::ToOwned::to_owned(#id);)
            } else {
                quote!(let #o = ::std::clone::Clone::clone(&#id);)
            }
        });
        let passes = fn_args.iter().map(|a| {
            let o = format_ident!("__owned_{}", a.ident);
            if a.by_ref { quote!(&#o) } else { quote!(#o) }
        });
        let recompute = if is_method {
            quote!(Self::#inner_name(&__this, #(#passes),*))
        } else {
            quote!(#inner_name(#(#passes),*))
        };
        // Only a success refreshes a stored `Result`'s value; an error
        // drops the ticket, and the entry lives until its TTL.
        let complete = match &stored {
            Some(_) => quote!(if let ::std::result::Result::Ok(__v) = __v {
                __ticket.complete(__v);
            }),
            None => quote!(__ticket.complete(__v);),
        };
        let spawn = if is_async {
            quote!(::cache_core::__private::refresh_in_task(async move {
                let __v = #recompute.await;
                #complete
            });)
        } else {
            quote!(::cache_core::__private::refresh_in_thread(move || {
                let __v = #recompute;
                #complete
            });)
        };
        let hit = wrap(quote!(__v));
        quote! {
            if let ::std::option::Option::Some((__v, __ticket)) = __cache.get_or_refresh(&__key) {
                if let ::std::option::Option::Some(__ticket) = __ticket {
                    #this
                    #(#owned_lets)*
                    #spawn
                }
                return #hit;
            }
        }
    });
    let hit = wrap(quote!(__v));
    let lookup = match (is_async, refresh.is_some(), stored.is_some()) {
        (false, _, true) => quote!({
            #[allow(unused_imports)]
            use ::cache_core::__private::{ViaOwnErr as _, ViaSharedErr as _};
            #try_load.load(__key, move || #call)
        }),
        (true, false, true) => quote! {
            if let ::std::option::Option::Some(__v) = __cache.get(&__key) {
                return #hit;
            }
            #[allow(unused_imports)]
            use ::cache_core::__private::{ViaOwnErr as _, ViaSharedErr as _};
            ::std::boxed::Box::pin(#try_load.load_async(__key, #call)).await
        },
        (true, true, true) => quote!({
            #[allow(unused_imports)]
            use ::cache_core::__private::{ViaOwnErr as _, ViaSharedErr as _};
            ::std::boxed::Box::pin(#try_load.load_async(__key, #call)).await
        }),
        (false, false, false) => quote!(__cache.get_or_insert_with(__key, move || #call)),
        // A hit must not build the body's future, and the future a caller
        // moves around must stay small: look up synchronously first, and box
        // the miss path (one allocation per miss) so its state, which holds
        // the body's future, is not part of this one.
        (true, false, false) => quote! {
            if let ::std::option::Option::Some(__v) = __cache.get(&__key) {
                return __v;
            }
            ::std::boxed::Box::pin(__cache.__load_async(__key, #call)).await
        },
        (false, true, false) => quote!(__cache.__load(__key, move || #call)),
        (true, true, false) => {
            quote!(::std::boxed::Box::pin(__cache.__load_async(__key, #call)).await)
        }
    };

    // In a service, `#[cache_put]` on another method builds this action's
    // key through a hidden sibling that takes the same arguments.
    let key_fn = service.map(|_| {
        let key_fn = format_ident!("__cache_key_{}", fn_name);
        let params = key_idx.iter().map(|i| {
            let (id, ty) = (&fn_args[*i].ident, &fn_args[*i].ty);
            quote!(#id: #ty)
        });
        let generics = &sig.generics;
        quote! {
            #[doc(hidden)]
            #[allow(dead_code, unused_variables)]
            #vis fn #key_fn #generics(#(#params),*) -> #key_ty {
                let __cache = #companion_call;
                #key_expr
            }
        }
    });

    Ok(quote! {
        #key_fn

        #(#attrs)*
        #vis #outer_sig {
            #(#asserts)*
            #assert_ret
            let __cache = #companion_call;
            let __key: #key_ty = #key_expr;
            #refresh
            #lookup
        }

        #inner_fn

        #companion_fn
    })
}

/// What the cache stores when it is not the whole return type: `T` of a
/// `Result<T, E>` whose errors are not cached (and no `unless` needs the
/// whole result), so `E` need not be `Clone` (`std::io::Error` works).
pub fn stored_type(args: &CachedArgs, ret: &Type) -> Option<(Type, Type)> {
    if args.cache_errors || args.unless.is_some() {
        return None;
    }
    let Type::Path(tp) = ret else { return None };
    if tp.qself.is_some() {
        return None;
    }
    let last = tp.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(ab) = &last.arguments else {
        return None;
    };
    let tys: Vec<&Type> = ab
        .args
        .iter()
        .filter_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    match tys.as_slice() {
        [ok, err] => Some(((*ok).clone(), (*err).clone())),
        _ => None,
    }
}

/// The action name: the `name` option, or the function's name.
pub fn action_name(args: &CachedArgs, fn_name: &Ident) -> String {
    args.name
        .as_ref()
        .map(|n| n.value())
        .unwrap_or_else(|| fn_name.to_string().trim_start_matches("r#").to_string())
}

/// The key template's segments and the arguments it names, in signature order.
pub fn key_template(
    args: &CachedArgs,
    action: &str,
    names: &[String],
) -> syn::Result<(Vec<Segment>, Vec<usize>)> {
    let segments = match &args.key {
        Some(lit) => {
            let segs = template::parse(lit, names, "key")?;
            // Two arguments with no `:` between them could render one text
            // for different values (`{a}{b}`: "1","23" and "12","3").
            let mut after_arg = false;
            for s in &segs {
                match s {
                    Segment::Text(t) if t.contains(':') => after_arg = false,
                    Segment::Text(_) => {}
                    Segment::Arg(_) | Segment::SepArg(_) => {
                        if after_arg {
                            return Err(syn::Error::new(
                                lit.span(),
                                "key template puts two arguments side by side; separate them with a `:` (as in \"{a}:{b}\") so that different values never share a key",
                            ));
                        }
                        after_arg = true;
                    }
                }
            }
            segs
        }
        None => {
            let mut s = vec![Segment::Text(action.to_owned())];
            s.extend((0..names.len()).map(Segment::SepArg));
            s
        }
    };
    let mut key_idx: Vec<usize> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Arg(i) | Segment::SepArg(i) => Some(*i),
            Segment::Text(_) => None,
        })
        .collect();
    key_idx.sort_unstable();
    key_idx.dedup();
    Ok((segments, key_idx))
}

/// The names and types of the arguments that form an action's key.
pub fn key_params(args: &CachedArgs, item: &ItemFn) -> syn::Result<Vec<(Ident, Type)>> {
    let fn_args = collect_args(item)?;
    let names: Vec<String> = fn_args.iter().map(|a| a.ident.to_string()).collect();
    let action = action_name(args, &item.sig.ident);
    let (_, key_idx) = key_template(args, &action, &names)?;
    Ok(key_idx
        .iter()
        .map(|i| (fn_args[*i].ident.clone(), fn_args[*i].ty.clone()))
        .collect())
}

/// The key type: the key arguments' owned types; in a service, the tenant
/// and each argument as an `Option` that configuration can mask out.
fn key_type(fn_args: &[Arg], key_idx: &[usize], service: bool) -> TokenStream {
    let tys = key_idx.iter().map(|i| &fn_args[*i].owned);
    if service {
        return quote!((::cache_core::__private::TenantId, u64, #(::std::option::Option<#tys>,)*));
    }
    match key_idx {
        [] => quote!(()),
        [one] => fn_args[*one].owned.clone(),
        _ => quote!((#(#tys,)*)),
    }
}

/// The expression that builds the key from the arguments in scope.
fn key_expr(fn_args: &[Arg], key_idx: &[usize], service: bool, cache: &TokenStream) -> TokenStream {
    let parts: Vec<TokenStream> = key_idx
        .iter()
        .map(|i| {
            let a = &fn_args[*i];
            let id = &a.ident;
            if a.by_ref {
                quote!(::std::borrow::ToOwned::to_owned(#id))
            } else {
                quote!(::std::clone::Clone::clone(&#id))
            }
        })
        .collect();
    if service {
        let gated = parts.iter().enumerate().map(|(bit, p)| {
            let bit = bit as u32;
            quote!(if __mask & (1u64 << #bit) != 0 {
                ::std::option::Option::Some(#p)
            } else {
                ::std::option::Option::None
            })
        });
        return quote!({
            let __mask = #cache.key_mask();
            (::cache_core::__private::current_tenant(), __mask, #(#gated,)*)
        });
    }
    match key_idx.len() {
        0 => quote!(()),
        1 => quote!(#(#parts)*),
        _ => quote!((#(#parts,)*)),
    }
}

fn check_generics(item: &ItemFn) -> syn::Result<()> {
    for p in &item.sig.generics.params {
        match p {
            syn::GenericParam::Lifetime(_) => {}
            syn::GenericParam::Type(t) => {
                return Err(syn::Error::new(
                    t.ident.span(),
                    "#[cached] cannot cache a generic function: its cache is one static with one key and value type; cache a non-generic wrapper that names the concrete types",
                ));
            }
            syn::GenericParam::Const(c) => {
                return Err(syn::Error::new(
                    c.ident.span(),
                    "#[cached] cannot cache a function with const generics: its cache is one static; cache a non-generic wrapper instead",
                ));
            }
        }
    }
    if let Some(w) = &item.sig.generics.where_clause {
        return Err(syn::Error::new(
            w.where_token.span(),
            "#[cached] cannot cache a function with a where clause: its cache is one static with concrete types",
        ));
    }
    Ok(())
}

/// Returns whether the function is a `&self` method; rejects other receivers.
fn check_receiver(item: &ItemFn) -> syn::Result<bool> {
    let Some(FnArg::Receiver(r)) = item.sig.inputs.first() else {
        return Ok(false);
    };
    if r.colon_token.is_some() {
        if let Type::Reference(tr) = &*r.ty
            && tr.mutability.is_none()
            && matches!(&*tr.elem, Type::Path(p) if p.path.is_ident("Self"))
        {
            return Ok(true);
        }
        return Err(syn::Error::new(
            r.ty.span(),
            "a #[cached] method takes `&self`; other receiver types are not supported",
        ));
    }
    match (&r.reference, &r.mutability) {
        (Some(_), None) => Ok(true),
        (Some(_), Some(m)) => Err(syn::Error::new(
            m.span(),
            "a #[cached] method takes `&self`, not `&mut self`: a cached call may not run, so it must not mutate; move the mutation out or drop #[cached]",
        )),
        (None, _) => Err(syn::Error::new(
            r.self_token.span(),
            "a #[cached] method takes `&self`, not `self` by value: the cache outlives any one call; take `&self`",
        )),
    }
}

fn collect_args(item: &ItemFn) -> syn::Result<Vec<Arg>> {
    let mut out = Vec::new();
    for input in &item.sig.inputs {
        let FnArg::Typed(pt) = input else { continue };
        let ident = match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "#[cached] needs a plain name for each argument (it goes into the key); destructure inside the body",
                ));
            }
        };
        let ty = (*pt.ty).clone();
        let (by_ref, owned) = match &ty {
            Type::Reference(r) => {
                if let Some(m) = &r.mutability {
                    return Err(syn::Error::new(
                        m.span(),
                        format!(
                            "argument `{ident}` is `&mut`: a cached call may not run, so it cannot write through it; pass `&` or a value"
                        ),
                    ));
                }
                check_owned_type(
                    &r.elem,
                    &format!("argument `{ident}`"),
                    "take an owned type or a plain `&T`",
                )?;
                let elem = &r.elem;
                (true, quote!(<#elem as ::std::borrow::ToOwned>::Owned))
            }
            t => {
                check_owned_type(
                    t,
                    &format!("argument `{ident}`"),
                    "take an owned type or a plain `&T`",
                )?;
                (false, quote!(#t))
            }
        };
        out.push(Arg {
            ident,
            ty,
            by_ref,
            owned,
        });
    }
    Ok(out)
}

/// Rejects `impl Trait`, `&mut`, nested references, lifetimes and `Self` in
/// a type that goes into the cache's static.
fn check_owned_type(ty: &Type, what: &str, fix: &str) -> syn::Result<()> {
    struct Finder(Option<syn::Error>, String, String);
    impl<'a> syn::visit::Visit<'a> for Finder {
        fn visit_type(&mut self, t: &'a Type) {
            if self.0.is_some() {
                return;
            }
            let (what, fix) = (&self.1, &self.2);
            match t {
                Type::ImplTrait(it) => {
                    self.0 = Some(syn::Error::new(
                        it.impl_token.span(),
                        format!(
                            "{what} uses `impl Trait`, which a cache cannot store or key on; name a concrete type"
                        ),
                    ));
                }
                Type::Reference(r) => {
                    let msg = match &r.mutability {
                        Some(_) => format!(
                            "{what} contains `&mut`, which cannot be part of a cache; {fix}"
                        ),
                        None => format!(
                            "{what} contains a borrowed reference, which a cache cannot keep; {fix}"
                        ),
                    };
                    self.0 = Some(syn::Error::new(r.and_token.span(), msg));
                }
                _ => syn::visit::visit_type(self, t),
            }
        }
        fn visit_lifetime(&mut self, l: &'a syn::Lifetime) {
            if self.0.is_none() && l.ident != "static" {
                self.0 = Some(syn::Error::new(
                    l.span(),
                    format!(
                        "{} borrows with lifetime `{l}`, which a cache cannot keep; {}",
                        self.1, self.2
                    ),
                ));
            }
        }
        fn visit_path_segment(&mut self, s: &'a syn::PathSegment) {
            if self.0.is_none() && s.ident == "Self" {
                self.0 = Some(syn::Error::new(
                    s.ident.span(),
                    format!(
                        "{} names `Self`, which the cache's static cannot see; write the type's name",
                        self.1
                    ),
                ));
            }
            syn::visit::visit_path_segment(self, s);
        }
        fn visit_macro(&mut self, m: &'a syn::Macro) {
            for tt in m.tokens.clone() {
                if let TokenTree::Ident(i) = tt
                    && i == "Self"
                    && self.0.is_none()
                {
                    self.0 = Some(syn::Error::new(
                        i.span(),
                        "write the type's name instead of `Self`",
                    ));
                }
            }
        }
    }
    let mut f = Finder(None, what.to_string(), fix.to_string());
    syn::visit::Visit::visit_type(&mut f, ty);
    match f.0 {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
