//! `#[deploy_cached]`: a device method whose body yields MicroPython code,
//! deployed once and afterwards only invoked, through
//! `::cache_device::__private`.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, LitStr, Pat, PathArguments, ReturnType, Type};

/// The options of `#[deploy_cached(...)]`.
#[derive(Default)]
pub struct DeployArgs {
    /// The Python function's name, when it differs from the method's.
    name: Option<LitStr>,
}

impl DeployArgs {
    pub fn parser() -> impl Parser<Output = DeployArgs> {
        |input: syn::parse::ParseStream| {
            let mut args = DeployArgs::default();
            let p = syn::meta::parser(|meta| {
                if meta.path.is_ident("name") {
                    if args.name.is_some() {
                        return Err(meta.error("duplicate option `name`; give it once"));
                    }
                    let name: LitStr = meta.value()?.parse()?;
                    if !is_python_name(&name.value()) {
                        return Err(syn::Error::new(
                            name.span(),
                            "`name` is the Python function the code defines: letters, digits and `_`, not starting with a digit",
                        ));
                    }
                    args.name = Some(name);
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown option of #[deploy_cached]; the one option is `name = \"python_function\"`",
                    ))
                }
            });
            p.parse2(input.parse()?)?;
            Ok(args)
        }
    }
}

fn is_python_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && s.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Checks the method and expands it.
pub fn expand(args: DeployArgs, item: ItemFn) -> syn::Result<TokenStream> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[deploy_cached] methods are `async fn`: a call waits on the device",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "#[deploy_cached] methods cannot be generic: the signature names the deployed code; use concrete types",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            "variadic arguments cannot be sent to a device",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some() => {}
        Some(FnArg::Receiver(r)) => {
            return Err(syn::Error::new(
                r.span(),
                "#[deploy_cached] methods take `&mut self`: a call drives the device's session",
            ));
        }
        _ => {
            return Err(syn::Error::new(
                sig.ident.span(),
                "#[deploy_cached] goes on methods of a device handle: take `&mut self` first",
            ));
        }
    }
    let mut names = Vec::new();
    let mut types = Vec::new();
    for input in inputs {
        let FnArg::Typed(pt) = input else {
            unreachable!("only the first input can be a receiver")
        };
        match &*pt.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                names.push(p.ident.clone())
            }
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "use a plain argument name: each argument becomes a positional parameter of the Python function",
                ));
            }
        }
        if let Type::ImplTrait(t) = &*pt.ty {
            return Err(syn::Error::new(
                t.span(),
                "`impl Trait` arguments make the method generic; name a concrete type (it travels to the device as JSON)",
            ));
        }
        types.push((*pt.ty).clone());
    }
    let ok_type = result_ok_type(&sig.output, sig.paren_token.span.close())?;

    // The body generates the code once for every call: it must not see the
    // arguments or `self`.
    let mut forbidden: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    forbidden.push("self".into());
    check_body(item.block.to_token_stream(), &forbidden, None)?;

    let method = sig.ident.to_string();
    let py_name = args
        .name
        .as_ref()
        .map_or_else(|| method.clone(), LitStr::value);
    if !is_python_name(&py_name) {
        return Err(syn::Error::new(
            sig.ident.span(),
            "the method's name is not a Python name; give one with `name = \"...\"`",
        ));
    }
    let args_text = names
        .iter()
        .zip(&types)
        .map(|(n, t)| format!("{n}: {}", t.to_token_stream()))
        .collect::<Vec<_>>()
        .join(", ");
    let signature = format!(
        "{method}({args_text}) -> {} as {py_name}",
        ok_type.to_token_stream()
    );

    // The wrapper's parameters: the same names, but hygienic, so the body
    // cannot reach them.
    let hidden: Vec<_> = names
        .iter()
        .map(|n| format_ident!("{}", n, span = Span::mixed_site()))
        .collect();
    let attrs = &item.attrs;
    let vis = &item.vis;
    let constness = &sig.constness;
    let unsafety = &sig.unsafety;
    let ident = &sig.ident;
    let output = &sig.output;
    let block = &item.block;
    let body_span = block.span();
    // The body runs in a closure of its own, so `return` in it yields code.
    let code = quote_spanned! {body_span=>
        #[allow(clippy::redundant_closure_call)]
        let __dc_code = ::cache_device::__private::IntoCode::into_code((|| #block)());
        __dc_code
    };
    let json_args = types.iter().zip(&hidden).map(|(t, h)| {
        quote_spanned!(t.span()=> <#t as ::cache_device::__private::Arg>::to_json(&#h, #py_name)?)
    });
    let from_json = quote_spanned!(ok_type.span()=>
        <#ok_type as ::cache_device::__private::Ret>::from_json(__dc_value, #py_name)
    );
    Ok(quote! {
        #(#attrs)*
        #vis #constness async #unsafety fn #ident(&mut self, #(#hidden: #types),*) #output {
            let __dc_signature = ::std::format!(
                "{}::{}",
                ::core::any::type_name::<Self>(),
                #signature
            );
            let __dc_result: ::core::result::Result<#ok_type, ::cache_device::DeviceError> = async {
                let __dc_args = [#(#json_args),*];
                let __dc_value = ::cache_device::__private::call(
                    self,
                    #py_name,
                    &__dc_signature,
                    || -> ::std::string::String { #code },
                    &__dc_args,
                )
                .await?;
                #from_json
            }
            .await;
            __dc_result.map_err(::core::convert::Into::into)
        }
    })
}

/// The `T` of the declared `Result<T, E>`.
fn result_ok_type(output: &ReturnType, close_paren: Span) -> syn::Result<&Type> {
    const WHAT: &str = "#[deploy_cached] methods return `Result<T, E>` (`T: Deserialize`, `E: From<DeviceError>`): the device can fail";
    let ty = match output {
        ReturnType::Default => return Err(syn::Error::new(close_paren, WHAT)),
        ReturnType::Type(_, ty) => ty,
    };
    if let Type::Path(p) = &**ty
        && let Some(last) = p.path.segments.last()
        && last.ident == "Result"
        && let PathArguments::AngleBracketed(a) = &last.arguments
        && let Some(GenericArgument::Type(t)) = a.args.first()
    {
        return Ok(t);
    }
    Err(syn::Error::new(ty.span(), WHAT))
}

/// Reports the first use of a forbidden name (an argument, or `self`) in the
/// body. Field names (`x.pin`) and path segments (`Self::pin`) are not uses.
fn check_body(
    tokens: TokenStream,
    forbidden: &[String],
    mut prev: Option<String>,
) -> syn::Result<()> {
    for tt in tokens {
        match &tt {
            TokenTree::Group(g) => check_body(g.stream(), forbidden, None)?,
            TokenTree::Ident(i) => {
                let name = i.to_string();
                let after_path = matches!(prev.as_deref(), Some(".") | Some(":"));
                if !after_path && forbidden.contains(&name) {
                    let msg = if name == "self" {
                        "the body of a #[deploy_cached] method yields the device code once for all calls, so it cannot use `self`; move what it needs into the Python code or a constant".to_owned()
                    } else {
                        format!(
                            "the body of a #[deploy_cached] method yields the device code once for all calls, so it cannot use the argument `{name}`; the Python function receives it as its parameter instead"
                        )
                    };
                    return Err(syn::Error::new(i.span(), msg));
                }
            }
            _ => {}
        }
        prev = match &tt {
            TokenTree::Punct(p) => Some(p.as_char().to_string()),
            _ => None,
        };
    }
    Ok(())
}
