//! Glob patterns with exactly the semantics of Redis's `KEYS`/`SCAN MATCH`.
//!
//! `*` matches any run of bytes, `?` one byte, `[abc]` a set, `[^a]` or the
//! complement, `[a-z]` a range (reversed ranges are swapped, as Redis does),
//! and `\` escapes the next byte, also inside brackets. The matcher is a
//! faithful port of Redis's `stringmatchlen`, so a remote Redis store and the
//! memory store select the same keys for the same pattern.
//!
//! Redis accepts any byte string as a pattern and quietly reads an unclosed
//! `[` (including `[abc-]`, where `c-]` is a range) or a trailing `\` in its
//! own way; [`Pattern::new`] rejects those with a
//! clear error instead, along with patterns longer than [`MAX_PATTERN_LEN`].

use std::fmt;

/// The longest pattern [`Pattern::new`] accepts, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;

/// Why a pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is longer than [`MAX_PATTERN_LEN`].
    #[error("pattern is {len} bytes long; the limit is {MAX_PATTERN_LEN}")]
    TooLong {
        /// The length of the rejected pattern.
        len: usize,
    },
    /// A `[` at this byte offset has no closing `]`.
    #[error(
        "unclosed `[` at byte {at} of pattern {pattern:?}; escape it as `\\[` to match a literal bracket"
    )]
    UnclosedBracket {
        /// The offending pattern.
        pattern: String,
        /// Byte offset of the `[`.
        at: usize,
    },
    /// The pattern ends with a lone `\`.
    #[error("pattern {pattern:?} ends with a lone `\\`; write `\\\\` to match a backslash")]
    TrailingEscape {
        /// The offending pattern.
        pattern: String,
    },
}

/// A validated glob pattern.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    src: String,
    literal: Option<String>,
}

impl Pattern {
    /// Parses and validates `src`.
    pub fn new(src: &str) -> Result<Pattern, PatternError> {
        if src.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong { len: src.len() });
        }
        let b = src.as_bytes();
        let mut literal = Some(String::new());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    // The escaped character, whole (it may be non-ASCII).
                    let Some(ch) = src[i + 1..].chars().next() else {
                        return Err(PatternError::TrailingEscape {
                            pattern: src.to_owned(),
                        });
                    };
                    if let Some(l) = literal.as_mut() {
                        l.push(ch);
                    }
                    i += 1 + ch.len_utf8();
                }
                b'[' => {
                    literal = None;
                    let open = i;
                    i += 1;
                    let mut closed = false;
                    // Read the set exactly as the matcher does: `x-y` is a
                    // range even when `y` is `]`, so `[abc-]` stays open.
                    if b.get(i) == Some(&b'^') {
                        i += 1;
                    }
                    while i < b.len() {
                        if b[i] == b'\\' && i + 1 < b.len() {
                            i += 2;
                        } else if b[i] == b']' {
                            closed = true;
                            i += 1;
                            break;
                        } else if i + 2 < b.len() && b[i + 1] == b'-' {
                            i += 3;
                        } else {
                            i += 1;
                        }
                    }
                    if !closed {
                        return Err(PatternError::UnclosedBracket {
                            pattern: src.to_owned(),
                            at: open,
                        });
                    }
                }
                b'*' | b'?' => {
                    literal = None;
                    i += 1;
                }
                _ => {
                    // Copy one whole UTF-8 character.
                    let ch = src[i..]
                        .chars()
                        .next()
                        .expect("index is on a char boundary");
                    if let Some(l) = literal.as_mut() {
                        l.push(ch);
                    }
                    i += ch.len_utf8();
                }
            }
        }
        Ok(Pattern {
            src: src.to_owned(),
            literal,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// The one string this pattern matches, when it has no wildcard.
    pub fn literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    /// Whether `s` matches the pattern.
    ///
    /// A lone `*` matches every key, the empty one included, as Redis's
    /// `KEYS` and `SCAN MATCH` treat it (its matcher alone would not).
    pub fn matches(&self, s: &str) -> bool {
        match &self.literal {
            Some(l) => l == s,
            None if self.src == "*" => true,
            None => glob_match(self.src.as_bytes(), s.as_bytes()),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.src)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.src)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::new(s)
    }
}

/// Matches `string` against `pattern` exactly as Redis's `stringmatchlen`
/// does (case-sensitive), for any bytes, including patterns that
/// [`Pattern::new`] would reject.
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    matchlen(pattern, string, &mut skip_longer, 0)
}

/// Byte `i` of `s`, or 0 past its end, as C reads a NUL-terminated buffer.
#[inline]
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn matchlen(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    // Redis's protection against abusive patterns.
    if nesting > 1000 {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if matchlen(&p[1..], s, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let not = at(p, 0) == b'^';
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                // `p` may run out: C then steps back onto the last byte so the
                // shared `pattern++` below leaves it empty.
                let mut back_one: Option<&[u8]> = None;
                loop {
                    if at(p, 0) == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if p[0] == s[0] {
                            matched = true;
                        }
                    } else if at(p, 0) == b']' {
                        break;
                    } else if p.is_empty() {
                        back_one = Some(p);
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        // Redis compares `char`s, which are signed on the
                        // platforms it runs on: bytes from 0x80 sort first.
                        let (mut lo, mut hi) = (p[0] as i8, p[2] as i8);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        p = &p[2..];
                        let c = s[0] as i8;
                        if c >= lo && c <= hi {
                            matched = true;
                        }
                    } else if p[0] == s[0] {
                        matched = true;
                    }
                    p = &p[1..];
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                if let Some(empty) = back_one {
                    // Pattern exhausted inside the bracket.
                    p = empty;
                    if s.is_empty() {
                        break;
                    }
                    continue;
                }
            }
            b'\\' => {
                if p.len() >= 2 {
                    p = &p[1..];
                }
                if p[0] != s[0] {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if c != s[0] {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while at(p, 0) == b'*' {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

/// Appends `s` with glob characters escaped, so it matches only itself.
pub fn push_glob_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(matches!(
            Pattern::new("a[bc"),
            Err(PatternError::UnclosedBracket { at: 1, .. })
        ));
        assert!(matches!(
            Pattern::new("ab\\"),
            Err(PatternError::TrailingEscape { .. })
        ));
        assert!(matches!(
            Pattern::new(&"x".repeat(MAX_PATTERN_LEN + 1)),
            Err(PatternError::TooLong { .. })
        ));
        assert_eq!(Pattern::new("a\\*b").unwrap().literal(), Some("a*b"));
        assert_eq!(Pattern::new("a*b").unwrap().literal(), None);
        assert_eq!(Pattern::new("\\é").unwrap().literal(), Some("é"));
        assert!(Pattern::new("\\é*").unwrap().matches("éx"));
        assert!(Pattern::new("[\\é]").is_ok());
    }

    #[test]
    fn no_input_panics() {
        // Every short string over a hostile alphabet parses or is refused.
        let alphabet = ["\\", "[", "]", "^", "-", "*", "?", "é", "a", "\u{80}", "💥"];
        let mut stack = vec![String::new()];
        while let Some(p) = stack.pop() {
            if let Ok(pat) = Pattern::new(&p) {
                let _ = pat.matches("aé-]💥");
            }
            if p.chars().count() < 4 {
                for a in alphabet {
                    stack.push(format!("{p}{a}"));
                }
            }
        }
    }
}
