//! The plan of one cached function: `#[cached]` and `#[cache_service]`
//! parse an attribute and a function into a [`Plan`] (every check, and
//! every fact the expansion needs, decided here), and
//! the expansion turns a plan into code in one place.

use proc_macro2::{TokenStream, TokenTree};
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Type};

use crate::args::CachedArgs;
use crate::template::{self, Segment};

/// One argument of the function.
pub struct Arg {
    pub ident: Ident,
    pub ty: Type,
    /// The argument is `&T`: the key holds `T::Owned`.
    pub by_ref: bool,
    pub owned: TokenStream,
}

/// Everything known about one cached function before code is generated.
pub struct Plan {
    pub args: CachedArgs,
    /// The service the function is an action of (`#[cache_service]`).
    pub service: Option<LitStr>,
    pub item: ItemFn,
    /// A `&self` method rather than a free function.
    pub is_method: bool,
    pub fn_args: Vec<Arg>,
    pub ret: Type,
    /// The action name: the `name` option or the function's.
    pub action: String,
    /// The key template, and which arguments it names (signature order).
    pub segments: Vec<Segment>,
    pub key_idx: Vec<usize>,
    pub tag_templates: Vec<Vec<Segment>>,
    /// `(T, E)` when the cache holds `T` of a `Result<T, E>` return.
    pub stored: Option<(Type, Type)>,
    /// `depends_on`'s templates, parsed.
    pub dep_templates: Vec<Vec<Segment>>,
}

impl Plan {
    /// Checks `item` under `args` and decides its expansion; every misuse
    /// is an error at the offending token.
    pub fn new(args: CachedArgs, item: ItemFn, service: Option<LitStr>) -> syn::Result<Plan> {
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
        let action = action_name(&args, &sig.ident);
        let names = arg_names(&fn_args);
        let (segments, key_idx) = key_template(&args, &action, &names)?;
        let in_key = |what: &str, plural: &str, lit: &LitStr| -> syn::Result<Vec<Segment>> {
            let segs = template::parse(lit, &names, what)?;
            for s in &segs {
                if let Segment::Arg(i) | Segment::SepArg(i) = s
                    && !key_idx.contains(i)
                {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "{what} names `{{{}}}`, which the key template leaves out; {plural} are built from the key's arguments",
                            names[*i]
                        ),
                    ));
                }
            }
            Ok(segs)
        };
        let dep_templates = args
            .depends_on
            .iter()
            .map(|t| in_key("dependency", "dependencies", t))
            .collect::<syn::Result<Vec<_>>>()?;
        let tag_templates = args
            .tags
            .iter()
            .map(|t| in_key("tag", "tags", t))
            .collect::<syn::Result<Vec<_>>>()?;
        let stored = stored_type(&args, &ret);
        Ok(Plan {
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
            dep_templates,
            stored,
        })
    }

    /// The argument names, in signature order.
    pub fn names(&self) -> Vec<String> {
        arg_names(&self.fn_args)
    }

    /// The names and types of the arguments that form the key.
    pub fn key_params(&self) -> Vec<(Ident, Type)> {
        self.key_idx
            .iter()
            .map(|i| (self.fn_args[*i].ident.clone(), self.fn_args[*i].ty.clone()))
            .collect()
    }

    /// What the cache holds: the return type, or `T` of `Result<T, E>`.
    pub fn value_type(&self) -> Type {
        self.stored
            .as_ref()
            .map_or_else(|| self.ret.clone(), |(ok, _)| ok.clone())
    }
}

fn arg_names(fn_args: &[Arg]) -> Vec<String> {
    fn_args.iter().map(|a| a.ident.to_string()).collect()
}

/// What the cache stores when it is not the whole return type: `T` of a
/// `Result<T, E>` whose errors are not cached (and no `unless` needs the
/// whole result), so `E` need not be `Clone` (`std::io::Error` works).
fn stored_type(args: &CachedArgs, ret: &Type) -> Option<(Type, Type)> {
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
fn action_name(args: &CachedArgs, fn_name: &Ident) -> String {
    args.name
        .as_ref()
        .map(|n| n.value())
        .unwrap_or_else(|| fn_name.to_string().trim_start_matches("r#").to_string())
}

/// The key template's segments and the arguments it names, in signature order.
fn key_template(
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
