//! What a response-cache key is made of, and the request and response
//! headers that decide whether to look up, what varies, and validators.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

/// Whether the request's `Cache-Control` or `Pragma` says `no-cache` (or
/// `no-store`): look nothing up.
pub(super) fn bypasses(headers: &HeaderMap) -> bool {
    let says = |name: &HeaderName, what: &[&str]| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|d| what.iter().any(|w| d.trim().eq_ignore_ascii_case(w)))
            })
        })
    };
    says(
        &header::CACHE_CONTROL,
        &["no-cache", "no-store", "max-age=0"],
    ) || says(&header::PRAGMA, &["no-cache"])
}

/// The header names a response varies on; `None` for `Vary: *`.
pub(super) fn vary_of(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for v in headers.get_all(header::VARY) {
        for n in v.to_str().unwrap_or("*").split(',') {
            let n = n.trim();
            if n == "*" {
                return None;
            }
            if let Ok(h) = HeaderName::try_from(n.to_ascii_lowercase()) {
                names.push(h);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Some(names)
}

/// The key text: path and query, then the `Host` and each varying
/// header's values.
pub(super) fn key_of(path: &str, vary: &[HeaderName], headers: &HeaderMap) -> String {
    let mut k = path.to_owned();
    for name in std::iter::once(&header::HOST).chain(vary) {
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            k.push('\n');
            k.push_str(name.as_str());
            k.push(':');
        }
        // One line per value: a value holds no newline (non-UTF-8 bytes
        // are escaped), so `a` + `b c` and `a` + `b` + `c` differ.
        for v in values {
            k.push('\n');
            k.push_str(name.as_str());
            k.push_str(": ");
            k.push_str(&v.as_bytes().escape_ascii().to_string());
        }
    }
    k
}

pub(super) fn etag_of(body: &[u8]) -> HeaderValue {
    let d = blake3::hash(body).to_hex();
    HeaderValue::from_str(&format!("\"{}\"", &d[..32])).expect("hex is a header value")
}

/// Whether `If-None-Match` names `etag` (or is `*`).
pub(super) fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let want = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let t = t.trim_ascii();
            let t = t.strip_prefix(b"W/").unwrap_or(t);
            t == b"*" || t == want || t == want.strip_prefix(b"W/").unwrap_or(want)
        })
    })
}
