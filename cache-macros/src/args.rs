//! The options of `#[cached(...)]`, parsed into one typed struct.

use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, ExprArray, Lit, LitBool, LitInt, LitStr};

const OPTIONS: &str = "ttl, tti, capacity, capacity_bytes, key, name, enabled, cache_errors, cache_none, unless, refresh, tags, eviction, priority, ttl_fn, depends_on, backend, index";

const INDEX_HELP: &str = "`index` names functions from a cached value to its terms, such as `index(language = language_of)` with `fn language_of(v: &V) -> Vec<String>`";

/// A duration given in the attribute, in milliseconds.
#[derive(Clone, Copy)]
pub struct Millis(pub u64);

#[derive(Default)]
pub struct CachedArgs {
    pub ttl: Option<Millis>,
    pub tti: Option<Millis>,
    pub refresh: Option<Millis>,
    pub capacity: Option<usize>,
    pub key: Option<LitStr>,
    pub name: Option<LitStr>,
    pub enabled: bool,
    pub cache_errors: bool,
    pub cache_none: bool,
    pub unless: Option<Expr>,
    pub tags: Vec<LitStr>,
    pub eviction: Option<Eviction>,
    /// Where values live unless configuration says otherwise.
    pub backend: Option<LitStr>,
    /// Secondary indexes: a name and a function from `&V` to its terms.
    pub indexes: Vec<(syn::Ident, Expr)>,
    /// The priority of the action's entries: `Low`, `Medium`, `High` or
    /// `Critical`.
    pub priority: Option<syn::Ident>,
    /// A bound in bytes, and the literal that gave it.
    pub capacity_bytes: Option<u64>,
    /// A function from `&V` to the entry's TTL.
    pub ttl_fn: Option<Expr>,
    /// Key templates of what the entries depend on.
    pub depends_on: Vec<LitStr>,
    seen: Vec<String>,
}

/// The eviction policies `eviction = "..."` names.
#[derive(Clone, Copy)]
pub enum Eviction {
    Engine,
    Lru,
    Lfu,
    TinyLfu,
}

impl CachedArgs {
    pub fn parser() -> impl Parser<Output = CachedArgs> {
        |input: syn::parse::ParseStream| {
            let mut args = CachedArgs {
                enabled: true,
                ..Default::default()
            };
            let p = syn::meta::parser(|meta| args.option(meta));
            p.parse2(input.parse()?)?;
            Ok(args)
        }
    }

    fn option(&mut self, meta: ParseNestedMeta) -> syn::Result<()> {
        let Some(ident) = meta.path.get_ident().map(|i| i.to_string()) else {
            return Err(meta.error(format!("expected an option name; options are: {OPTIONS}")));
        };
        if self.seen.contains(&ident) {
            return Err(meta.error(format!("duplicate option `{ident}`; give it once")));
        }
        self.seen.push(ident.clone());
        match ident.as_str() {
            "ttl" => self.ttl = Some(duration(&meta, "ttl")?),
            "tti" => self.tti = Some(duration(&meta, "tti")?),
            "refresh" => self.refresh = Some(duration(&meta, "refresh")?),
            "capacity" => {
                let lit: LitInt =
                    value(&meta, "capacity", "an integer, such as `capacity = 10_000`")?;
                let n: usize = lit.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new(lit.span(), "capacity must be at least 1"));
                }
                self.capacity = Some(n);
            }
            "key" => {
                self.key = Some(value(
                    &meta,
                    "key",
                    "a string template, such as `key = \"user:{id}\"`",
                )?)
            }
            "name" => {
                let s: LitStr = value(&meta, "name", "a string, such as `name = \"get_user\"`")?;
                let ok = !s.value().is_empty()
                    && s.value()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
                if !ok {
                    return Err(syn::Error::new(
                        s.span(),
                        "name must be non-empty and use only ASCII letters, digits, `_`, `-` and `.`",
                    ));
                }
                self.name = Some(s);
            }
            "enabled" => self.enabled = flag(&meta, "enabled")?,
            "cache_errors" => self.cache_errors = flag(&meta, "cache_errors")?,
            "cache_none" => self.cache_none = flag(&meta, "cache_none")?,
            "unless" => {
                if !meta.input.peek(syn::Token![=]) {
                    return Err(meta.error(
                        "`unless` takes an expression over `result`, such as `unless = result.is_empty()`",
                    ));
                }
                self.unless = Some(meta.value()?.parse()?);
            }
            "tags" => {
                self.tags = templates(
                    &meta,
                    "tags",
                    "a list of string templates, such as `tags = [\"user:{id}\"]`",
                    "each tag is a string template, such as \"user:{id}\"",
                )?
            }
            "backend" => {
                let s: LitStr = value(
                    &meta,
                    "backend",
                    "a store's name: \"memory\", \"tiered\", \"redis\", \"disk\" or a registered one",
                )?;
                let v = s.value();
                if v.trim().is_empty() || v.trim() != v {
                    return Err(syn::Error::new(
                        s.span(),
                        "`backend` names a store: \"memory\", \"tiered\", \"redis\", \"disk\" or one registered with cache_core::backends::register",
                    ));
                }
                self.backend = Some(s);
            }
            "eviction" => {
                let s: LitStr = value(
                    &meta,
                    "eviction",
                    "\"engine\", \"lru\", \"lfu\" or \"tinylfu\"",
                )?;
                self.eviction = Some(match s.value().as_str() {
                    "lru" => Eviction::Lru,
                    "lfu" => Eviction::Lfu,
                    "tinylfu" | "w-tinylfu" => Eviction::TinyLfu,
                    "engine" => Eviction::Engine,
                    other => {
                        return Err(syn::Error::new(
                            s.span(),
                            format!(
                                "unknown eviction policy {other:?}; expected \"lru\", \"lfu\", \"tinylfu\" or \"engine\" (the default)"
                            ),
                        ));
                    }
                });
            }
            "priority" => {
                let expected = "\"low\", \"medium\", \"high\" or \"critical\"";
                let s: LitStr = value(&meta, "priority", expected)?;
                let variant = match s.value().as_str() {
                    "low" => "Low",
                    "medium" => "Medium",
                    "high" => "High",
                    "critical" => "Critical",
                    other => {
                        return Err(syn::Error::new(
                            s.span(),
                            format!("unknown priority {other:?}; expected {expected}"),
                        ));
                    }
                };
                self.priority = Some(syn::Ident::new(variant, s.span()));
            }
            "capacity_bytes" => {
                let expected = "a size such as `capacity_bytes = \"64MiB\"`, or a number of bytes";
                let lit: Lit = value(&meta, "capacity_bytes", expected)?;
                let n = match &lit {
                    Lit::Str(s) => cache_common::parse_bytes(&s.value())
                        .map_err(|why| syn::Error::new(s.span(), why))?,
                    Lit::Int(i) => {
                        let n: u64 = i.base10_parse()?;
                        if n == 0 {
                            return Err(syn::Error::new(
                                i.span(),
                                "capacity_bytes must be at least 1",
                            ));
                        }
                        n
                    }
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            format!("`capacity_bytes` takes {expected}"),
                        ));
                    }
                };
                self.capacity_bytes = Some(n);
            }
            "ttl_fn" => {
                if !meta.input.peek(syn::Token![=]) {
                    return Err(meta.error(
                        "`ttl_fn` names a function from the value to its TTL, such as `ttl_fn = ttl_of` with `fn ttl_of(v: &V) -> Duration`",
                    ));
                }
                self.ttl_fn = Some(meta.value()?.parse()?);
            }
            "depends_on" => {
                self.depends_on = templates(
                    &meta,
                    "depends_on",
                    "a list of key templates, such as `depends_on = [\"get_user:{id}\"]`",
                    "each dependency is a key template, such as \"get_user:{id}\"",
                )?;
                if self.depends_on.is_empty() {
                    return Err(meta.error(
                        "`depends_on` needs at least one key template, such as `depends_on = [\"get_user:{id}\"]`",
                    ));
                }
            }
            "index" => {
                if !meta.input.peek(syn::token::Paren) {
                    return Err(meta.error(INDEX_HELP));
                }
                let before = self.indexes.len();
                meta.parse_nested_meta(|inner| {
                    let Some(name) = inner.path.get_ident().cloned() else {
                        return Err(inner.error(
                            "an index is named by an identifier, such as `language = language_of`",
                        ));
                    };
                    if self.indexes.iter().any(|(n, _)| *n == name) {
                        return Err(inner.error(format!(
                            "duplicate index `{name}`; name each index once"
                        )));
                    }
                    if !inner.input.peek(syn::Token![=]) {
                        return Err(inner.error(format!(
                            "index `{name}` needs a function: `{name} = terms_of`, with `fn terms_of(v: &V) -> Vec<String>`"
                        )));
                    }
                    let f: Expr = inner.value()?.parse()?;
                    self.indexes.push((name, f));
                    Ok(())
                })?;
                if self.indexes.len() == before {
                    return Err(meta.error(INDEX_HELP));
                }
            }
            other => {
                return Err(meta.error(format!("unknown option `{other}`; options are: {OPTIONS}")));
            }
        }
        Ok(())
    }
}

/// Parses `= <T>` with an error that says what was expected.
fn value<T: syn::parse::Parse>(
    meta: &ParseNestedMeta,
    name: &str,
    expected: &str,
) -> syn::Result<T> {
    if !meta.input.peek(syn::Token![=]) {
        return Err(meta.error(format!("`{name}` needs a value: {expected}")));
    }
    let v = meta.value()?;
    let fork = v.fork();
    match fork.parse::<T>() {
        Ok(_) => v.parse(),
        Err(_) => {
            let tok: proc_macro2::TokenTree = v.parse()?;
            Err(syn::Error::new_spanned(
                tok,
                format!("`{name}` takes {expected}"),
            ))
        }
    }
}

/// `= ["...", ...]`: string literals, each an error at its token otherwise.
pub(crate) fn templates(
    meta: &ParseNestedMeta,
    name: &str,
    expected: &str,
    each: &str,
) -> syn::Result<Vec<LitStr>> {
    let arr: ExprArray = value(meta, name, expected)?;
    arr.elems
        .into_iter()
        .map(|e| match e {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) => Ok(s),
            other => Err(syn::Error::new_spanned(other, each)),
        })
        .collect()
}

/// `flag`, `flag = true` or `flag = false`.
fn flag(meta: &ParseNestedMeta, name: &str) -> syn::Result<bool> {
    if !meta.input.peek(syn::Token![=]) {
        return Ok(true);
    }
    let b: LitBool = value(meta, name, "`true` or `false`")?;
    Ok(b.value)
}

fn duration(meta: &ParseNestedMeta, name: &str) -> syn::Result<Millis> {
    let expected = "integer seconds or a duration string such as \"500ms\", \"2m\" or \"1h30m\"";
    if !meta.input.peek(syn::Token![=]) {
        return Err(meta.error(format!("`{name}` needs a value: {expected}")));
    }
    let lit: Lit = value(meta, name, expected)?;
    let ms = match &lit {
        Lit::Int(i) => i
            .base10_parse::<u64>()?
            .checked_mul(1000)
            .ok_or_else(|| syn::Error::new(i.span(), format!("`{name}` is too large")))?,
        Lit::Str(s) => cache_common::parse_duration_ms(&s.value()).map_err(|why| {
            syn::Error::new(
                s.span(),
                format!(
                    "invalid `{name}` {:?}: {why}; expected {expected}",
                    s.value()
                ),
            )
        })?,
        other => {
            return Err(syn::Error::new(
                other.span(),
                format!("`{name}` takes {expected}"),
            ));
        }
    };
    if ms == 0 {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{name}` must be longer than zero"),
        ));
    }
    Ok(Millis(ms))
}
