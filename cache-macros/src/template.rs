//! Key and tag templates: `"user:{id}:{name}"` over argument names.

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
    let src = lit.value();
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "unclosed `{{` in {what} template; write `{{{{` for a literal brace"
                        ),
                    ));
                }
                let name = name.trim();
                let Some(i) = args.iter().position(|a| a == name) else {
                    let known = if args.is_empty() {
                        "the function has no arguments".to_string()
                    } else {
                        format!("arguments are: {}", args.join(", "))
                    };
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "{what} template names `{{{name}}}`, which is not an argument; {known}"
                        ),
                    ));
                };
                if !text.is_empty() {
                    out.push(Segment::Text(std::mem::take(&mut text)));
                }
                out.push(Segment::Arg(i));
            }
            '}' => {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("unmatched `}}` in {what} template; write `}}}}` for a literal brace"),
                ));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Segment::Text(text));
    }
    Ok(out)
}
