//! Column type inference: numeric, boolean or categorical, from the distinct
//! values a column holds.

use serde::{Deserialize, Serialize};

/// How a feature column is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Numeric,
    Categorical,
    Boolean,
}

/// Share of non-blank cells that must parse as numbers for a column to be
/// inferred numeric; the rest are imputed like blanks.
const NUMERIC_SHARE: f64 = 0.95;

/// Whether `token` spells true (`Some(true)`), false (`Some(false)`) or
/// neither, case-insensitively.
pub fn boolean_token(token: &str) -> Option<bool> {
    match token.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "t" | "1" => Some(true),
        "false" | "no" | "n" | "f" | "0" => Some(false),
        _ => None,
    }
}

/// What a cell of a numeric column holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumericCell {
    /// Blank.
    Missing,
    /// A finite number.
    Value(f64),
    /// Text that is not a finite number.
    Unparsable,
}

/// Parses a numeric cell, ignoring surrounding whitespace.
pub fn parse_number(cell: &str) -> NumericCell {
    let cell = cell.trim();
    if cell.is_empty() {
        return NumericCell::Missing;
    }
    match cell.parse::<f64>() {
        Ok(x) if x.is_finite() => NumericCell::Value(x),
        _ => NumericCell::Unparsable,
    }
}

/// Infers a column's kind from its distinct non-blank values and their
/// counts.
pub fn infer_kind<'a>(distinct: impl Iterator<Item = (&'a str, usize)>) -> ColumnKind {
    let mut values = 0usize;
    let mut numeric = 0usize;
    let mut seen = Vec::new();
    for (value, count) in distinct {
        if value.trim().is_empty() {
            continue;
        }
        values += count;
        if matches!(parse_number(value), NumericCell::Value(_)) {
            numeric += count;
        }
        if seen.len() <= 2 {
            seen.push(value);
        }
    }
    if seen.len() == 2 {
        let a = boolean_token(seen[0]);
        let b = boolean_token(seen[1]);
        if let (Some(a), Some(b)) = (a, b)
            && a != b
        {
            return ColumnKind::Boolean;
        }
    }
    if values > 0 && numeric as f64 >= NUMERIC_SHARE * values as f64 {
        ColumnKind::Numeric
    } else {
        ColumnKind::Categorical
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(values: &[(&str, usize)]) -> ColumnKind {
        infer_kind(values.iter().copied())
    }

    #[test]
    fn booleans_need_two_opposite_tokens() {
        assert_eq!(kind(&[("TRUE", 5), ("FALSE", 3)]), ColumnKind::Boolean);
        assert_eq!(kind(&[("Yes", 5), ("No", 3), ("", 2)]), ColumnKind::Boolean);
        assert_eq!(kind(&[("0", 5), ("1", 3)]), ColumnKind::Boolean);
        assert_eq!(kind(&[("Yes", 5), ("Y", 3)]), ColumnKind::Categorical);
        assert_eq!(kind(&[("Male", 5), ("Female", 3)]), ColumnKind::Categorical);
    }

    #[test]
    fn numbers_with_a_few_blanks_or_bad_cells_stay_numeric() {
        assert_eq!(kind(&[("1.5", 50), ("2", 40), (" ", 11)]), ColumnKind::Numeric);
        assert_eq!(kind(&[("1.5", 99), ("n/a", 1)]), ColumnKind::Numeric);
        assert_eq!(kind(&[("1.5", 50), ("n/a", 50)]), ColumnKind::Categorical);
        assert_eq!(kind(&[("inf", 5), ("NaN", 5)]), ColumnKind::Categorical);
    }

    #[test]
    fn blank_columns_are_categorical() {
        assert_eq!(kind(&[("", 5)]), ColumnKind::Categorical);
    }
}
