//! Durations as configuration writes them: `500ms`, `2m`, `1h30m`, `1d`.
//!
//! `cache-macros` and `cache-core` both read durations through this module,
//! so the attribute and the configuration file accept the same spellings.

/// Parses a duration string into milliseconds.
///
/// Units: `ms`, `s`, `m`, `h`, `d`; parts add up (`1h30m`). Every number
/// needs a unit; a bare number is an error here (the attribute and the
/// configuration read a bare integer as seconds before calling this).
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| "number too large".to_string())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let per = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("{n} has no unit (ms, s, m, h or d)")),
            u => return Err(format!("unknown unit {u:?} (use ms, s, m, h or d)")),
        };
        total = n
            .checked_mul(per)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "duration too large".to_string())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms as p;

    #[test]
    fn spellings() {
        assert_eq!(p("500ms"), Ok(500));
        assert_eq!(p("2m"), Ok(120_000));
        assert_eq!(p("1h30m"), Ok(5_400_000));
        assert_eq!(p(" 1d "), Ok(86_400_000));
        assert!(p("5").unwrap_err().contains("no unit"));
        assert!(p("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(p("").is_err());
        assert!(p("ms").is_err());
        assert!(p("99999999999999999999s").is_err());
    }
}
