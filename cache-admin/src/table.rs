//! Readable tables of the API's answers.

use serde_json::Value;

/// `s` safe for a terminal: control characters (escape sequences, line
/// breaks, C1 codes) and backslashes written as Rust escapes, so text from
/// the server (a key is a caller's argument) cannot drive the terminal and
/// one value stays one line. `--json` keeps the exact text.
pub fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Columns padded to their widest cell; numbers right-aligned.
fn grid(head: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| shown(c)).collect())
        .collect();
    let rows = &rows;
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            let numeric = !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_digit() || ch == '.' || ch == '%');
            if i > 0 {
                s.push_str("  ");
            }
            if numeric {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn num(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => n.to_string(),
        None => v.as_f64().map_or_else(|| "-".into(), |f| format!("{f:.2}")),
    }
}

/// `services`: each service and its caches.
pub fn services(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let caches: Vec<&str> = s["caches"]
                        .as_array()
                        .map(|c| c.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    vec![
                        s["name"].as_str().unwrap_or("").to_owned(),
                        caches.join(", "),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    grid(&["SERVICE", "CACHES"], &rows)
}

/// `stats`: one row per action and a total.
pub fn stats(v: &Value) -> String {
    let row = |name: &str, s: &Value| {
        vec![
            name.to_owned(),
            num(&s["hits"]),
            num(&s["misses"]),
            format!("{:.1}%", s["hit_rate"].as_f64().unwrap_or(0.0) * 100.0),
            num(&s["entries"]),
            num(&s["loads"]),
            num(&s["load_failures"]),
            format!("{:.3}", s["mean_load_ms"].as_f64().unwrap_or(0.0)),
            num(&s["evictions"]),
            num(&s["expirations"]),
            num(&s["invalidations"]),
        ]
    };
    let mut rows: Vec<Vec<String>> = v["actions"]
        .as_object()
        .map(|m| m.iter().map(|(k, s)| row(k, s)).collect())
        .unwrap_or_default();
    rows.push(row("(total)", &v["total"]));
    grid(
        &[
            "ACTION",
            "HITS",
            "MISSES",
            "HIT RATE",
            "ENTRIES",
            "LOADS",
            "FAILED",
            "MEAN MS",
            "EVICTED",
            "EXPIRED",
            "INVALIDATED",
        ],
        &rows,
    )
}

/// `keys`: one key per line.
pub fn keys(v: &Value) -> String {
    let mut out = String::new();
    for k in v["keys"].as_array().into_iter().flatten() {
        out.push_str(&shown(k.as_str().unwrap_or("")));
        out.push('\n');
    }
    out
}

/// `delete`, `revoke`, `clear`: what was removed.
pub fn outcome(v: &Value) -> String {
    let n = ["deleted", "revoked", "cleared"]
        .iter()
        .find_map(|k| v[*k].as_u64().map(|n| (*k, n)));
    match n {
        Some((what, n)) => format!("{what} {n}\n"),
        None => format!("{}\n", shown(&v.to_string())),
    }
}

/// `health`: the status, then one row per backend.
pub fn health(v: &Value) -> String {
    let yes_no = |b: &Value| match b.as_bool() {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => "-".to_owned(),
    };
    let rows: Vec<Vec<String>> = v["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            vec![
                b["backend"].as_str().unwrap_or("").to_owned(),
                yes_no(&b["reached"]),
                yes_no(&b["reachable"]),
                yes_no(&b["breaker_open"]),
                yes_no(&b["subscribed"]),
                b["peers"].as_u64().map_or("-".into(), |p| p.to_string()),
                num(&b["errors"]),
                b["last_error"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    format!(
        "status {} (ready: {}, caches: {})\n{}",
        shown(v["status"].as_str().unwrap_or("?")),
        yes_no(&v["ready"]),
        num(&v["caches"]),
        grid(
            &[
                "BACKEND",
                "REACHED",
                "UP",
                "BREAKER",
                "SUBSCRIBED",
                "PEERS",
                "ERRORS",
                "LAST ERROR",
            ],
            &rows,
        )
    )
}
