//! The eviction and invalidation controls of a cached action: `priority`,
//! `capacity_bytes`, `ttl_fn` and `depends_on`, as builder calls, and the
//! dependency spec the action submits at link time.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::plan::Plan;
use crate::template::Segment;

/// The builder calls for the controls, and the items to put in the cache's
/// companion (the dependency spec).
pub fn controls(
    plan: &Plan,
    key_ty: &TokenStream,
    val: &syn::Type,
    access: &dyn Fn(usize) -> TokenStream,
    companion: &syn::Ident,
) -> (TokenStream, TokenStream) {
    let args = &plan.args;
    let names = plan.names();
    let priority = args
        .priority
        .as_ref()
        .map(|p| quote!(.priority(::cache_core::__private::Priority::#p)));
    // A weigher always: configuration may bound the cache in bytes too.
    let weigher = quote! {
        .weigher({
            #[allow(unused_imports)]
            use ::cache_core::__private::{ViaSize as _, ViaWeigh as _};
            (&&::cache_core::__private::WeighProbe::<#key_ty, #val>::new()).weigher()
        })
    };
    let capacity_bytes = args.capacity_bytes.map(|b| quote!(.capacity_bytes(#b)));
    let ttl_fn = args.ttl_fn.as_ref().map(|f| {
        quote_spanned! {f.span()=>
            .ttl_fn(|__v: &#val| -> ::cache_core::__private::Duration { (#f)(__v) })
        }
    });
    if plan.dep_templates.is_empty() {
        return (
            quote!(#priority #weigher #capacity_bytes #ttl_fn),
            TokenStream::new(),
        );
    }
    let deps: Vec<String> = args.depends_on.iter().map(|l| l.value()).collect();
    let mut used: Vec<usize> = Vec::new();
    for segs in &plan.dep_templates {
        for s in segs {
            if let Segment::Arg(i) | Segment::SepArg(i) = s
                && !used.contains(i)
            {
                used.push(*i);
            }
        }
    }
    let service = plan.service.is_some();
    let renders = used.iter().map(|&i| {
        let name = &names[i];
        let acc = access(i);
        if service {
            // An argument configuration masks out of the key has no text.
            quote!(if let ::std::option::Option::Some(__v) = #acc {
                let mut __s = ::std::string::String::new();
                (&&::cache_core::__private::KeyArg(__v)).write_arg(&mut __s);
                __out.push((#name, __s));
            })
        } else {
            quote!({
                let mut __s = ::std::string::String::new();
                (&&::cache_core::__private::KeyArg(#acc)).write_arg(&mut __s);
                __out.push((#name, __s));
            })
        }
    });
    let calls = quote! {
        #priority #weigher #capacity_bytes #ttl_fn
        .depends_on(&[#(#deps),*], {
            #[allow(unused_imports)]
            fn __dep_args(__k: &#key_ty) -> ::std::vec::Vec<(&'static str, ::std::string::String)> {
                use ::cache_core::__private::{ViaHash as _, ViaKeyPart as _, ViaSerialize as _};
                let mut __out = ::std::vec::Vec::new();
                #(#renders)*
                __out
            }
            __dep_args
        })
    };
    let key = key_template(&plan.segments, &names);
    // A free function's cache can be built by name from here; a service
    // builds its own caches.
    let init = if plan.is_method || service {
        quote!(::std::option::Option::None)
    } else {
        quote!(::std::option::Option::Some(|| {
            let _ = #companion();
        }))
    };
    let spec = quote! {
        ::cache_core::__private::inventory::submit! {
            ::cache_core::__private::DependencySpec {
                key: #key,
                deps: &[#(#deps),*],
                init: #init,
            }
        }
    };
    (calls, spec)
}

/// The action's key as a template over its argument names (braces in text
/// doubled), as dependency templates name it.
fn key_template(segments: &[Segment], names: &[String]) -> String {
    let mut s = String::new();
    for seg in segments {
        match seg {
            Segment::Text(t) => s.push_str(&t.replace('{', "{{").replace('}', "}}")),
            Segment::Arg(i) => s.push_str(&format!("{{{}}}", names[*i])),
            Segment::SepArg(i) => s.push_str(&format!(":{{{}}}", names[*i])),
        }
    }
    s
}
