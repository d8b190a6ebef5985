//! Attribute macros for `cache-core`. Depend on `cache-core`, which
//! re-exports them; generated code reaches the runtime only through
//! `::cache_core::__private`.

mod args;
/// Shared with the runtime, so attribute and configuration read durations alike.
#[path = "../../cache-core/src/duration.rs"]
#[allow(dead_code)]
mod duration;
mod expand;
mod template;

use proc_macro::TokenStream;

/// Caches a function's or a method's results under a key derived from its
/// arguments. See the `cache-core` crate documentation for the options.
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    let args = match syn::parse::Parser::parse(args::CachedArgs::parser(), attr) {
        Ok(a) => a,
        Err(e) => {
            let err = e.to_compile_error();
            return quote::quote!(#err #item).into();
        }
    };
    match expand::expand(args, item.clone()) {
        Ok(ts) => ts.into(),
        // Keep the function as written so its callers do not fail too.
        Err(e) => {
            let err = e.to_compile_error();
            quote::quote!(#err #item).into()
        }
    }
}
