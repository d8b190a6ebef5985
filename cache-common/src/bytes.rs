//! Byte sizes as configuration and attributes spell them: `"64MiB"`,
//! `"512 KB"`, or a bare number of bytes.

/// Parses a byte size (binary units `KiB`, `MiB`, `GiB`…; decimal `KB`,
/// `MB`, `GB`…), which must be at least 1 byte.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let n = t
        .parse::<bytesize::ByteSize>()
        .map_err(|why| {
            format!("invalid byte size {s:?}: {why}; write it as \"64MiB\" or \"512KB\"")
        })?
        .as_u64();
    if n == 0 {
        return Err(format!(
            "invalid byte size {s:?}: a bound must be at least 1 byte"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1 KB"), Ok(1000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("0").unwrap_err().contains("at least 1"));
        assert!(parse_bytes("lots").unwrap_err().contains("64MiB"));
        assert!(parse_bytes("5 parsecs").is_err());
    }
}
