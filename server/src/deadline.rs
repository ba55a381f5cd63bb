//! The caller's deadline, from the standard `grpc-timeout` request header.

use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

/// When the caller stops waiting, if it said.
pub fn from_metadata(metadata: &MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    parse_timeout(value).map(|timeout| Instant::now() + timeout)
}

/// Parses `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_of_the_grpc_spec() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("100u"), Some(Duration::from_micros(100)));
        assert_eq!(parse_timeout("S"), None);
        assert_eq!(parse_timeout("12x"), None);
        assert_eq!(parse_timeout("123456789S"), None);
    }
}
