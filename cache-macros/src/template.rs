//! Key and tag templates: `"user:{id}:{name}"` over argument names, parsed
//! by the grammar `cache-core` also uses for event mappings
//! ([`cache_common::template`]).

use cache_common::template::{Piece, TemplateError};
use syn::LitStr;

pub enum Segment {
    Text(String),
    /// An argument, by its index among the function's arguments.
    Arg(usize),
    /// `:` and an argument, as default keys join them; both are left out
    /// when configuration masks the argument out of the key.
    SepArg(usize),
}

/// Parses `lit` against the argument names; `{{` and `}}` are literal braces.
pub fn parse(lit: &LitStr, args: &[String], what: &str) -> syn::Result<Vec<Segment>> {
    let pieces = cache_common::template::parse(&lit.value()).map_err(|e| {
        let msg = match e {
            TemplateError::Unclosed => {
                format!("unclosed `{{` in {what} template; write `{{{{` for a literal brace")
            }
            TemplateError::Unmatched => {
                format!("unmatched `}}` in {what} template; write `}}}}` for a literal brace")
            }
            other => format!("in {what} template: {other}"),
        };
        syn::Error::new(lit.span(), msg)
    })?;
    pieces
        .into_iter()
        .map(|p| match p {
            Piece::Text(t) => Ok(Segment::Text(t)),
            Piece::Field(name) => match args.iter().position(|a| *a == name) {
                Some(i) => Ok(Segment::Arg(i)),
                None => {
                    let known = if args.is_empty() {
                        "the function has no arguments".to_string()
                    } else {
                        format!("arguments are: {}", args.join(", "))
                    };
                    Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "{what} template names `{{{name}}}`, which is not an argument; {known}"
                        ),
                    ))
                }
            },
        })
        .collect()
}
