//! Expansion of a [`Plan`], in one place for `#[cached]` and the actions of
//! `#[cache_service]`, free functions and methods,
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

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat};

use crate::plan::{Arg, Plan};
use crate::template::Segment;

/// The code of a planned function: the wrapper (lookup, single-flight,
/// store), the untouched body as a hidden sibling, and the companion that
/// builds the cache once.
pub fn expand(plan: &Plan) -> TokenStream {
    let Plan {
        args,
        service,
        item,
        is_method,
        fn_args,
        ret,
        action,
        segments,
        key_idx,
        tag_templates,
        stored,
        dep_templates: _,
    } = plan;
    let (is_method, key_idx, service) = (*is_method, key_idx.as_slice(), service.as_ref());
    let sig = &item.sig;
    let fn_name = &sig.ident;
    let names = plan.names();

    // The key type and how generated code reaches each key argument. In a
    // service the key is (tenant, Option<arg>...): configuration's `keys`
    // masks arguments out at runtime, and tenants never share entries.
    let key_ty = key_type(fn_args, key_idx, service.is_some());
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
    let key_expr = key_expr(fn_args, key_idx, service.is_some(), &quote!(__cache));
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
    let render_body = write_segments(segments);
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
            crate::args::Eviction::TinyLfu => quote!(TinyLfu),
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
    let val = plan.value_type();
    // Loads that may fail share the error with their waiters when it is
    // `Clone`, and otherwise leave each waiter to compute.
    let try_load = stored
        .as_ref()
        .map(|(_, err)| quote!((&::cache_core::__private::TryLoad::<_, _, #err>::new(__cache))));
    let cache_ty = quote!(::cache_core::__private::Cache<#key_ty, #val>);
    let companion_doc =
        format!("The cache of `{fn_name}`: invalidate, revoke, list and count its entries.");
    let index_calls = args.indexes.iter().map(|(name, f)| {
        let name = name.to_string();
        quote! {
            .index(#name, |__v: &#val| -> ::std::vec::Vec<::std::string::String> { (#f)(__v) })
        }
    });
    let (control_calls, dep_spec) =
        crate::control::controls(plan, &key_ty, &val, &access, &companion);
    let companion_fn = quote! {
        #[doc = #companion_doc]
        #[allow(dead_code)]
        #vis fn #companion() -> &'static #cache_ty {
            static __CACHE: ::cache_core::__private::OnceLock<#cache_ty> =
                ::cache_core::__private::OnceLock::new();
            #dep_spec
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
                    #control_calls
                    .store_if(__store_if)
                    #tags_fn
                    #(#index_calls)*
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

    // `<fn>_prime`: the same arguments; computes and stores whatever the
    // cache holds.
    let prime_name = format_ident!("{}_prime", fn_name);
    let mut prime_sig = outer_sig.clone();
    prime_sig.ident = prime_name;
    let prime_doc = format!(
        "Computes `{fn_name}` for these arguments and stores the result in its cache, \
         whatever the cache holds (a value read before an invalidation of the key is not stored)."
    );
    let prime_call = match (is_async, stored.is_some()) {
        (false, true) => quote!(__cache.try_prime(__key, move || #call)),
        (false, false) => quote!(__cache.prime(__key, move || #call)),
        (true, true) => quote!(__cache.try_prime_async(__key, #call).await),
        (true, false) => quote!(__cache.prime_async(__key, #call).await),
    };
    let prime_fn = quote! {
        #[doc = #prime_doc]
        #[allow(dead_code)]
        #vis #prime_sig {
            let __cache = #companion_call;
            let __key: #key_ty = #key_expr;
            #prime_call
        }
    };

    let _ = ret;
    quote! {

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

        #prime_fn
    }
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
