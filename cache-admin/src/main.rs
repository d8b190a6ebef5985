//! `cache-admin`: the admin HTTP API of `cache-core` from a shell.
//!
//! ```text
//! cache-admin [--url URL] [--token TOKEN] [--json] <command>
//!   services                       the services and their caches
//!   stats <service>                counters per action and in total
//!   keys <service> [--pattern P] [--tag T] [--where INDEX=TERM]... [--limit N]
//!   delete <service> <key>         one key
//!   revoke <service> <pattern>     every key matching a glob
//!   clear <service>                every key
//!   health                         backends' state; exit 8 when not ready
//!   metrics                        the Prometheus text
//! ```
//!
//! The token comes from `--token` or `CACHE_ADMIN_TOKEN`, the URL from
//! `--url` or `CACHE_ADMIN_URL`. Exit codes say what failed; see [`Failure`].

mod api;
mod table;

/// `INDEX=TERM`, split at the first `=`.
fn index_term(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((i, t)) if !i.is_empty() => Ok((i.to_string(), t.to_string())),
        _ => Err(format!("{s:?}: give INDEX=TERM, as in language=python")),
    }
}

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use api::{Client, Failure};

/// The admin CLI of cache-core.
#[derive(Parser, Debug)]
#[command(name = "cache-admin", version, about, long_about = None)]
struct Cli {
    /// Where the admin router is served.
    #[arg(long, env = "CACHE_ADMIN_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The bearer token (prefer the environment variable: arguments show in
    /// process lists).
    #[arg(long, env = "CACHE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Only this tenant's entries.
    #[arg(long, global = true)]
    tenant: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The services and their caches.
    Services,
    /// Counters of a service's actions.
    Stats {
        /// The service.
        service: String,
    },
    /// A service's live keys, sorted.
    Keys {
        /// The service.
        service: String,
        /// Only keys matching this glob.
        #[arg(long)]
        pattern: Option<String>,
        /// Only keys stored with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only keys whose value has this term in this index
        /// (`language=python`); repeat to intersect.
        #[arg(long = "where", value_name = "INDEX=TERM", value_parser = index_term)]
        terms: Vec<(String, String)>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Removes one key.
    Delete {
        /// The service.
        service: String,
        /// The key's text, as `keys` lists it.
        key: String,
    },
    /// Removes every key matching a glob.
    Revoke {
        /// The service.
        service: String,
        /// A Redis-style glob.
        pattern: String,
    },
    /// Removes every key of a service.
    Clear {
        /// The service.
        service: String,
    },
    /// The backends' state (exit 8 when not ready).
    Health,
    /// Every meter in the Prometheus text format.
    Metrics,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("cache-admin: {}", table::shown(&f.to_string()));
            ExitCode::from(f.code())
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let client = Client::new(&cli.url, cli.token.as_deref(), cli.timeout)?;
    let tenant = cli.tenant.as_deref();
    let out = match &cli.command {
        Command::Services => Output::Json(client.get("/services", &[])?, table::services),
        Command::Stats { service } => Output::Json(
            client.get(&format!("/{}/cache/stats", api::segment(service)), &[])?,
            table::stats,
        ),
        Command::Keys {
            service,
            pattern,
            tag,
            terms,
            limit,
        } => {
            let limit = limit.map(|l| l.to_string());
            let names: Vec<String> = terms.iter().map(|(i, _)| format!("where.{i}")).collect();
            let mut query = vec![
                ("pattern", pattern.as_deref()),
                ("tag", tag.as_deref()),
                ("limit", limit.as_deref()),
                ("tenant", tenant),
            ];
            for (name, (_, term)) in names.iter().zip(terms.iter()) {
                query.push((name.as_str(), Some(term.as_str())));
            }
            Output::Json(
                client.get(&format!("/{}/cache/keys", api::segment(service)), &query)?,
                table::keys,
            )
        }
        Command::Delete { service, key } => Output::Json(
            client.post(service, "delete", serde_json::json!({ "key": key }), tenant)?,
            table::outcome,
        ),
        Command::Revoke { service, pattern } => Output::Json(
            client.post(
                service,
                "revoke",
                serde_json::json!({ "pattern": pattern }),
                tenant,
            )?,
            table::outcome,
        ),
        Command::Clear { service } => Output::Json(
            client.post(service, "clear", serde_json::json!({}), tenant)?,
            table::outcome,
        ),
        Command::Health => {
            let (ready, body) = client.ready()?;
            print(cli.json, Output::Json(body, table::health))?;
            return if ready {
                Ok(())
            } else {
                Err(Failure::NotReady)
            };
        }
        Command::Metrics => Output::Text(client.text("/metrics")?),
    };
    print(cli.json, out)
}

enum Output {
    Json(serde_json::Value, fn(&serde_json::Value) -> String),
    Text(String),
}

/// Writes the answer to standard output. A reader that went away early
/// (`cache-admin metrics | head -1`) ends the command quietly, as it does for
/// other Unix tools; any other write failure is an error, not a panic.
fn print(json: bool, out: Output) -> Result<(), Failure> {
    let text = match out {
        Output::Json(v, _) if json => format!("{v:#}\n"),
        Output::Json(v, render) => render(&v),
        Output::Text(t) => t,
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Output(e)),
        _ => Ok(()),
    }
}
