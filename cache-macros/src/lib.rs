//! Attribute macros for `cache-core`. Depend on `cache-core`, which
//! re-exports them; generated code reaches the runtime only through
//! `::cache_core::__private`.

mod args;
mod control;
mod device;
mod expand;
mod plan;
mod service;
mod template;
mod writes;

use proc_macro::TokenStream;

/// Caches a function's or a method's results under a key derived from its
/// arguments, sync or async, with one computation per missed key however
/// many callers wait on it.
///
/// ```ignore
/// #[cached(ttl = 60)]
/// fn get_user(id: u64) -> Result<User, DbError> { /* ... */ }
/// ```
///
/// | option | default | meaning |
/// |---|---|---|
/// | `ttl` | none | time to live: integer seconds or `"500ms"`, `"2m"`, `"1h30m"` |
/// | `tti` | none | expire after this long without a hit |
/// | `capacity` | 10 000 | bound on entries |
/// | `key` | `"<name>:{arg1}:{arg2}"` | key template over argument names (separated by `:`); arguments it leaves out are not part of the key |
/// | `name` | the function's name | the action name in keys, configuration and the registry |
/// | `enabled` | `true` | `false` turns caching off (configuration can turn it back on) |
/// | `cache_errors` / `cache_none` | `false` | cache `Err` / `None` too |
/// | `unless = <expr>` | | not stored when true; `result` is a reference to the return value |
/// | `refresh = <duration>` | | refresh-ahead: past this age a hit returns the value and recomputes it once in the background |
/// | `tags = ["user:{id}"]` | | tags over key arguments, for `invalidate_tag` |
/// | `eviction = "lru" \| "lfu" \| "tinylfu"` | the engine's own | exact LRU or LFU per shard, or W-TinyLFU, instead of the engine's policy |
/// | `priority = "low" \| "medium" \| "high" \| "critical"` | `"medium"` | lower priorities are evicted first; `critical` entries, within their share, never for size |
/// | `capacity_bytes = "64MiB"` | | bound on the entries' total weight (by `cache_core::Weigh`, or inline sizes) |
/// | `ttl_fn = path::to_fn` | | each value's own TTL, `fn(&V) -> Duration`; zero means not cached |
/// | `depends_on = ["get_user:{id}"]` | | keys the entries depend on: invalidating one invalidates them, transitively |
/// | `backend = "<store>"` | `"memory"` | where values live: `"memory"`, `"tiered"`, `"redis"`, `"disk"` or a registered store; configuration wins over it |
///
/// Every misuse (an unknown option, a key template naming no argument, an
/// argument that cannot be part of a key, a return type that cannot be
/// cached) is a compile error at the offending token.
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    // Left inert by a `#[cache_service]` that reported an error.
    if attr.to_string() == "__consumed" {
        return item;
    }
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    let args = match syn::parse::Parser::parse(args::CachedArgs::parser(), attr) {
        Ok(a) => a,
        Err(e) => {
            let err = e.to_compile_error();
            return quote::quote!(#err #item).into();
        }
    };
    match plan::Plan::new(args, item.clone(), None) {
        Ok(plan) => expand::expand(&plan).into(),
        // Keep the function as written so its callers do not fail too.
        Err(e) => {
            let err = e.to_compile_error();
            quote::quote!(#err #item).into()
        }
    }
}

/// Groups an impl block's cached actions under one service: generated
/// handlers (`{service}/cache/clear|delete|revoke|stats|keys`), a
/// configuration section, tenant-scoped keys, and `#[cache_evict]` and
/// `#[cache_put]` on write methods. See the `cache-core` documentation.
#[proc_macro_attribute]
pub fn cache_service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemImpl);
    let result = syn::parse::Parser::parse(service::ServiceArgs::parser(), attr)
        .and_then(|args| service::expand(args, item.clone()));
    match result {
        Ok(ts) => ts.into(),
        // Keep the impl, without the attributes that would now complain
        // that they are outside a service.
        Err(e) => {
            let err = e.to_compile_error();
            let item = service::strip_roles(item);
            quote::quote!(#err #item).into()
        }
    }
}

/// Deploys a device method's MicroPython code once, then only invokes it.
/// Re-exported and documented by `cache-device`; expands to
/// `::cache_device::__private`.
#[proc_macro_attribute]
pub fn deploy_cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemFn);
    let result = syn::parse::Parser::parse(device::DeployArgs::parser(), attr)
        .and_then(|args| device::expand(args, item.clone()));
    match result {
        Ok(ts) => ts.into(),
        // Keep the method's signature, so its callers do not fail too; its
        // body (the code, not a Result) would only add noise. The
        // compile_error! beside it stops the build, so this body never runs.
        Err(e) => {
            let err = e.to_compile_error();
            let syn::ItemFn {
                attrs, vis, sig, ..
            } = item;
            let body = quote::quote!(::core::unreachable!(
                "#[deploy_cached] reported a compile error for this method"
            ));
            quote::quote!(#err #(#attrs)* #[allow(unused_variables)] #vis #sig { #body }).into()
        }
    }
}

/// Marks a method of a `#[cache_service]` impl: `#[action(cache(ttl = 60))]`
/// caches it like `#[cached(ttl = 60)]`; a bare `#[action]` leaves it as is.
#[proc_macro_attribute]
pub fn action(attr: TokenStream, item: TokenStream) -> TokenStream {
    outside_service("action", attr, item)
}

/// Evicts keys, patterns, tags or everything of the service after the method
/// succeeds (`before = true`: before it runs). Inside `#[cache_service]`.
#[proc_macro_attribute]
pub fn cache_evict(attr: TokenStream, item: TokenStream) -> TokenStream {
    outside_service("cache_evict", attr, item)
}

/// Stores the method's result in the named action's cache, under the key
/// that action builds from the same-named arguments. Inside `#[cache_service]`.
#[proc_macro_attribute]
pub fn cache_put(attr: TokenStream, item: TokenStream) -> TokenStream {
    outside_service("cache_put", attr, item)
}

/// These attributes do their work inside `#[cache_service]`, which leaves
/// them behind as inert `__consumed` markers; anywhere else they are errors.
fn outside_service(name: &str, attr: TokenStream, item: TokenStream) -> TokenStream {
    if attr.to_string() == "__consumed" {
        return item;
    }
    let item = proc_macro2::TokenStream::from(item);
    let msg = format!(
        "#[{name}] works on a method of an impl block marked #[cache_service(name = \"...\")]; add that attribute to the impl"
    );
    let err = syn::Error::new(proc_macro2::Span::call_site(), msg).to_compile_error();
    quote::quote!(#err #item).into()
}
