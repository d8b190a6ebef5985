//! How a stored response travels to a remote tier: plain strings, bytes and
//! a time, from which the receiving node rebuilds the caching policy. A
//! value that no longer decodes (a bad header, say) reads as a miss.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_cache_semantics::CachePolicy;
use serde::{Deserialize, Serialize};

use super::{Entry, Stored};

#[derive(Serialize, Deserialize)]
struct Wire {
    uri: String,
    /// The request as kept: its host, varying and cache headers only.
    request: Vec<(String, Vec<u8>)>,
    response: Vec<(String, Vec<u8>)>,
    /// When the response arrived, in milliseconds since the Unix epoch.
    at_ms: u64,
    body: Vec<u8>,
    etag: Vec<u8>,
}

fn pairs(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn headers<E: serde::de::Error>(p: Vec<(String, Vec<u8>)>) -> Result<HeaderMap, E> {
    let mut h = HeaderMap::new();
    for (k, v) in p {
        let name = HeaderName::try_from(k).map_err(E::custom)?;
        let value = HeaderValue::from_bytes(&v).map_err(E::custom)?;
        h.append(name, value);
    }
    Ok(h)
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let at_ms = self
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Wire {
            uri: self.uri.clone(),
            request: pairs(&self.kept_headers),
            response: pairs(&self.headers),
            at_ms,
            body: self.body.to_vec(),
            etag: self.etag.as_bytes().to_vec(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = Wire::deserialize(d)?;
        let mut req = Request::get(w.uri.as_str())
            .body(())
            .map_err(D::Error::custom)?
            .into_parts()
            .0;
        req.headers = headers(w.request)?;
        let mut res = Response::new(()).into_parts().0;
        res.headers = headers(w.response)?;
        let at = UNIX_EPOCH + Duration::from_millis(w.at_ms);
        let policy = CachePolicy::new_options(&req, &res, at, Default::default());
        let etag = HeaderValue::from_bytes(&w.etag).map_err(D::Error::custom)?;
        Ok(Entry(Arc::new(Stored {
            policy,
            uri: w.uri,
            kept_headers: req.headers,
            headers: res.headers,
            at,
            body: Bytes::from(w.body),
            etag,
        })))
    }
}
