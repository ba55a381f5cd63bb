//! Which strings may name a model.

use crate::{RegistryError, Result};

/// Longest accepted model name, in bytes.
pub const MAX_MODEL_NAME_LEN: usize = 64;

/// Alias names follow the same rules as model names.
pub fn validate_alias_name(name: &str) -> Result<()> {
    validate_model_name(name).map_err(|e| match e {
        RegistryError::InvalidModelName { name, reason } => RegistryError::InvalidAliasName { name, reason },
        other => other,
    })
}

/// Accepts 1–64 characters of `[A-Za-z0-9_.-]` that start with a letter or a
/// digit: safe in URLs, file names, metric labels and shells.
pub fn validate_model_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(RegistryError::InvalidModelName {
            name: truncate_for_message(name),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("must not be empty");
    }
    if name.len() > MAX_MODEL_NAME_LEN {
        return invalid("longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return invalid("only letters, digits, '_', '.' and '-' are allowed");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return invalid("must start with a letter or a digit");
    }
    Ok(())
}

/// Keeps error messages bounded when a caller sends a huge name.
fn truncate_for_message(name: &str) -> String {
    const SHOWN: usize = 80;
    if name.chars().count() <= SHOWN {
        name.to_string()
    } else {
        let head: String = name.chars().take(SHOWN).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["shoppers", "churn-v2", "a", "Model_1.beta", "7days"] {
            validate_model_name(name).unwrap();
        }
    }

    #[test]
    fn rejects_unsafe_names() {
        let long = "x".repeat(65);
        for name in [
            "",
            "../etc/passwd",
            "a/b",
            "a b",
            "-flag",
            ".hidden",
            "x'; DROP TABLE models;--",
            "caf\u{e9}",
            "tab\tname",
            long.as_str(),
        ] {
            let err = validate_model_name(name).unwrap_err();
            assert!(
                matches!(err, RegistryError::InvalidModelName { .. }),
                "{name:?} gave {err}"
            );
        }
    }

    #[test]
    fn long_names_are_truncated_in_errors() {
        let err = validate_model_name(&"y".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 300, "{err}");
    }
}
