//! The admin API's client: one request per command, answers as JSON, and
//! every failure as a [`Failure`] with its own exit code.

use std::time::Duration;

use serde_json::Value;

/// Why a command failed; [`Failure::code`] is the process's exit code.
#[derive(Debug)]
pub enum Failure {
    /// The URL is not one to call (exit 2, as for bad arguments).
    BadUrl(String),
    /// The token was missing or wrong (exit 3).
    Unauthorized { token_given: bool },
    /// No such service, operation or route (exit 4).
    NotFound(String),
    /// The API refused the request: bad pattern, body or method (exit 5).
    Refused(u16, String),
    /// The API failed (exit 6).
    Server(u16, String),
    /// Nothing answered at the URL, or not in time (exit 7).
    Unreachable(String),
    /// `health`: the process is not ready (exit 8).
    NotReady,
    /// The answer was not what the API sends (exit 9).
    BadAnswer(String),
    /// The answer could not be written to standard output (exit 10). A
    /// reader that closed the pipe early is not a failure.
    Output(std::io::Error),
}

impl Failure {
    /// The exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::BadUrl(_) => 2,
            Failure::Unauthorized { .. } => 3,
            Failure::NotFound(_) => 4,
            Failure::Refused(..) => 5,
            Failure::Server(..) => 6,
            Failure::Unreachable(_) => 7,
            Failure::NotReady => 8,
            Failure::BadAnswer(_) => 9,
            Failure::Output(_) => 10,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadUrl(m) => write!(f, "bad --url: {m}"),
            Failure::Unauthorized { token_given: false } => {
                write!(f, "no token: pass --token or set CACHE_ADMIN_TOKEN")
            }
            Failure::Unauthorized { token_given: true } => write!(f, "the token was refused"),
            Failure::NotFound(m) => write!(f, "not found: {m}"),
            Failure::Refused(s, m) => write!(f, "refused ({s}): {m}"),
            Failure::Server(s, m) => write!(f, "the server failed ({s}): {m}"),
            Failure::Unreachable(m) => write!(f, "cannot reach the admin API: {m}"),
            Failure::NotReady => write!(f, "not ready"),
            Failure::BadAnswer(m) => write!(f, "unexpected answer: {m}"),
            Failure::Output(e) => write!(f, "cannot write the answer: {e}"),
        }
    }
}

/// Percent-encodes `s` as one path segment (everything but letters and
/// digits, so `/`, `?`, `%` and `..` stay inside it).
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A client of one admin router.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the router at `url`.
    pub fn new(url: &str, token: Option<&str>, timeout_s: u64) -> Result<Client, Failure> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::BadUrl(format!(
                "{url:?} does not start with http:// or https://"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(timeout_s.max(1))))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
        })
    }

    fn auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => r.header("Authorization", format!("Bearer {t}")),
            None => r,
        }
    }

    /// `GET path` with the non-empty `query` pairs, as JSON.
    pub fn get(&self, path: &str, query: &[(&str, Option<&str>)]) -> Result<Value, Failure> {
        let mut r = self.auth(self.agent.get(format!("{}{path}", self.base)));
        for (k, v) in query {
            if let Some(v) = v {
                r = r.query(*k, *v);
            }
        }
        json(self.answer(r.call())?)
    }

    /// `POST /{service}/cache/{op}` with `body` (and the tenant), as JSON.
    pub fn post(
        &self,
        service: &str,
        op: &str,
        mut body: Value,
        tenant: Option<&str>,
    ) -> Result<Value, Failure> {
        if let Some(t) = tenant {
            body["tenant"] = Value::from(t);
        }
        let url = format!("{}/{}/cache/{op}", self.base, segment(service));
        let r = self
            .auth(self.agent.post(url))
            .content_type("application/json")
            .send(body.to_string());
        json(self.answer(r)?)
    }

    /// `GET path` as text.
    pub fn text(&self, path: &str) -> Result<String, Failure> {
        let r = self.auth(self.agent.get(format!("{}{path}", self.base)));
        self.answer(r.call())
    }

    /// `GET /ready`: whether ready, and the backends' state.
    pub fn ready(&self) -> Result<(bool, Value), Failure> {
        let r = self.agent.get(format!("{}/ready", self.base)).call();
        match r {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let text = read(&mut resp)?;
                match status {
                    200 | 503 => Ok((status == 200, json(text)?)),
                    _ => Err(status_failure(status, &text, self.token.is_some())),
                }
            }
            Err(e) => Err(Failure::Unreachable(e.to_string())),
        }
    }

    /// The body of a 2xx answer; any other status as its failure.
    fn answer(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, Failure> {
        let mut resp = r.map_err(|e| Failure::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = read(&mut resp)?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(status_failure(status, &text, self.token.is_some()))
        }
    }
}

fn read(resp: &mut ureq::http::Response<ureq::Body>) -> Result<String, Failure> {
    resp.body_mut()
        .read_to_string()
        .map_err(|e| Failure::Unreachable(format!("reading the answer: {e}")))
}

fn json(text: String) -> Result<Value, Failure> {
    serde_json::from_str(&text).map_err(|e| {
        let shown: String = text.chars().take(200).collect();
        Failure::BadAnswer(format!("not JSON ({e}): {shown}"))
    })
}

/// The API's `{"error": ...}` text, or the body itself.
fn status_failure(status: u16, text: &str, token_given: bool) -> Failure {
    let message = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(200).collect());
    match status {
        401 | 403 => Failure::Unauthorized { token_given },
        404 => Failure::NotFound(message),
        400..=499 => Failure::Refused(status, message),
        _ => Failure::Server(status, message),
    }
}
