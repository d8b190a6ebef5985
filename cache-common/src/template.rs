//! The template grammar of keys, tags and event mappings: text with
//! `{name}` fields, where `{{` and `}}` are literal braces.
//!
//! A field names a function argument (keys and tags, checked at compile
//! time) or a payload field, possibly nested as `{a.b}` (event mappings,
//! checked when configuration loads). One parser serves both, so the two
//! never disagree on what a template means.

use std::fmt;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text (braces already unescaped).
    Text(String),
    /// A `{field}`, trimmed of surrounding spaces; never empty.
    Field(String),
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `{` without its `}`.
    Unclosed,
    /// A `}` without its `{`.
    Unmatched,
    /// `{}` with nothing inside.
    Empty,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TemplateError::Unclosed => "unclosed `{`; write `{{` for a literal brace",
            TemplateError::Unmatched => "unmatched `}`; write `}}` for a literal brace",
            TemplateError::Empty => "empty `{}`; name a field inside the braces",
        })
    }
}

impl std::error::Error for TemplateError {}

/// Parses `src` into text and fields.
pub fn parse(src: &str) -> Result<Vec<Piece>, TemplateError> {
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
                    return Err(TemplateError::Unclosed);
                }
                let name = name.trim();
                if name.is_empty() {
                    return Err(TemplateError::Empty);
                }
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Field(name.to_owned()));
            }
            '}' => return Err(TemplateError::Unmatched),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Piece {
        Piece::Text(s.into())
    }
    fn f(s: &str) -> Piece {
        Piece::Field(s.into())
    }

    #[test]
    fn fields_text_and_escaped_braces() {
        assert_eq!(parse("user:{id}").unwrap(), vec![t("user:"), f("id")]);
        assert_eq!(parse("{ a.b }:{{x}}").unwrap(), vec![f("a.b"), t(":{x}")]);
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("{a}{b}").unwrap(), vec![f("a"), f("b")]);
    }

    #[test]
    fn malformed_templates_say_what_is_wrong() {
        assert_eq!(parse("a{b"), Err(TemplateError::Unclosed));
        assert_eq!(parse("a}b"), Err(TemplateError::Unmatched));
        assert_eq!(parse("a{ }"), Err(TemplateError::Empty));
        assert!(TemplateError::Unclosed.to_string().contains("{{"));
    }
}
