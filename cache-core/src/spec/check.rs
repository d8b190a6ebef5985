//! The checks of a configuration that need no I/O: capacities, the
//! seed's ranges, eviction names, event templates.

use std::time::Duration;

use cache_common::template::{self, Piece};

use super::*;

/// The seed's settings one level (global, service or action) gives.
pub(super) struct Level<'a> {
    capacity: Option<usize>,
    max_items: Option<usize>,
    eviction: Option<&'a str>,
    eviction_batch_size: Option<usize>,
    sync_interval: Option<Duration>,
    priority: Option<&'a str>,
    critical_share: Option<f64>,
}

impl Config {
    fn level(&self) -> Level<'_> {
        Level {
            capacity: self.capacity,
            max_items: self.max_items,
            eviction: self.eviction.as_deref(),
            eviction_batch_size: self.eviction_batch_size,
            sync_interval: self.sync_interval.map(|d| d.0),
            priority: self.priority.as_deref(),
            critical_share: self.critical_share,
        }
    }
}

impl ServiceConfig {
    fn level(&self) -> Level<'_> {
        Level {
            capacity: self.capacity,
            max_items: self.max_items,
            eviction: self.eviction.as_deref(),
            eviction_batch_size: self.eviction_batch_size,
            sync_interval: self.sync_interval.map(|d| d.0),
            priority: self.priority.as_deref(),
            critical_share: self.critical_share,
        }
    }
}

impl ActionConfig {
    fn level(&self) -> Level<'_> {
        Level {
            capacity: self.capacity,
            max_items: self.max_items,
            eviction: self.eviction.as_deref(),
            eviction_batch_size: self.eviction_batch_size,
            sync_interval: self.sync_interval.map(|d| d.0),
            priority: self.priority.as_deref(),
            critical_share: self.critical_share,
        }
    }
}

/// `max_items`' range, as the seed gives it.
pub const MAX_ITEMS: std::ops::RangeInclusive<usize> = 100..=1_000_000;
/// `eviction_batch_size`'s range.
pub const EVICTION_BATCH: std::ops::RangeInclusive<usize> = 1..=1_000;
/// `sync_interval`'s range.
pub const SYNC_INTERVAL: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(3600);

impl Config {
    /// What is wrong with one level's seed settings (`field` prefixes
    /// the names).
    fn settings_errors(&self, origin: &str, field: String, l: &Level<'_>) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let mut bad = |message: String| {
            out.push(ConfigError::Invalid {
                origin: origin.to_string(),
                message,
            })
        };
        if let Some(m) = l.max_items {
            if !MAX_ITEMS.contains(&m) {
                bad(format!(
                    "{field}max_items = {m}: give between {} and {}",
                    MAX_ITEMS.start(),
                    MAX_ITEMS.end()
                ));
            }
            if l.capacity.is_some() {
                bad(format!(
                    "{field}max_items and {field}capacity are one setting; give one"
                ));
            }
        }
        if let Some(e) = l.eviction
            && let Err(why) = e.parse::<crate::eviction::Eviction>()
        {
            bad(format!("{field}eviction: {why}"));
        }
        if let Some(p) = l.priority
            && let Err(why) = p.parse::<crate::eviction::Priority>()
        {
            bad(format!("{field}priority: {why}"));
        }
        if let Some(c) = l.critical_share
            && !(0.0..=1.0).contains(&c)
        {
            bad(format!(
                "{field}critical_share = {c}: give a share between 0 and 1, such as 0.25"
            ));
        }
        if let Some(n) = l.eviction_batch_size
            && !EVICTION_BATCH.contains(&n)
        {
            bad(format!(
                "{field}eviction_batch_size = {n}: give between {} and {}",
                EVICTION_BATCH.start(),
                EVICTION_BATCH.end()
            ));
        }
        if let Some(d) = l.sync_interval
            && !SYNC_INTERVAL.contains(&d)
        {
            bad(format!(
                "{field}sync_interval = {d:?}: give between 10s and 1h"
            ));
        }
        out
    }

    pub(crate) fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let cap_err = |field: String, v: usize| {
            (v == 0).then(|| ConfigError::Invalid {
                origin: origin.to_string(),
                message: format!("{field} = 0: a capacity must be at least 1"),
            })
        };
        let mut errs = Vec::new();
        if let Err(message) = self.dht_options() {
            errs.push(ConfigError::Invalid {
                origin: origin.to_string(),
                message,
            });
        }
        errs.extend(self.capacity.and_then(|v| cap_err("capacity".into(), v)));
        if let Some(m) = self.metrics.max_tenants
            && !(1..=MAX_TENANT_SERIES).contains(&m)
        {
            errs.push(ConfigError::Invalid {
                origin: origin.to_string(),
                message: format!(
                    "metrics.max_tenants = {m}: give between 1 and {MAX_TENANT_SERIES}"
                ),
            });
        }
        for (s, sc) in &self.services {
            errs.extend(
                sc.capacity
                    .and_then(|v| cap_err(format!("services.{s}.capacity"), v)),
            );
            for (a, ac) in &sc.actions {
                errs.extend(
                    ac.capacity
                        .and_then(|v| cap_err(format!("services.{s}.actions.{a}.capacity"), v)),
                );
            }
        }
        errs.extend(self.settings_errors(origin, String::new(), &self.level()));
        for (s, sc) in &self.services {
            errs.extend(self.settings_errors(origin, format!("services.{s}."), &sc.level()));
            for (a, ac) in &sc.actions {
                errs.extend(self.settings_errors(
                    origin,
                    format!("services.{s}.actions.{a}."),
                    &ac.level(),
                ));
            }
        }
        for (a, ac) in &self.actions {
            errs.extend(self.settings_errors(origin, format!("actions.{a}."), &ac.level()));
        }
        for (field, name) in self.store_names() {
            if name.is_empty() || matches!(name.as_str(), "tiered") && field.ends_with("l2") {
                errs.push(ConfigError::Invalid {
                    origin: origin.to_string(),
                    message: format!("{field} = {name:?}: name a store outside the process"),
                });
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            for k in &e.keys {
                if let Err(why) = check_event_template(k) {
                    errs.push(ConfigError::Invalid {
                        origin: origin.to_string(),
                        message: format!("events[{i}].keys: {k:?}: {why}"),
                    });
                }
            }
        }
        match errs.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Checks an event key template: its braces, and that it is a valid pattern
/// once filled.
pub(crate) fn check_event_template(t: &str) -> Result<(), String> {
    let mut sample = String::new();
    for piece in template::parse(t).map_err(|e| e.to_string())? {
        match piece {
            Piece::Text(text) => sample.push_str(&text),
            Piece::Field(_) => sample.push('x'),
        }
    }
    Pattern::new(&sample).map(|_| ()).map_err(|e| e.to_string())
}
