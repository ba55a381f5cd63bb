//! One record value read for one column: a number for a numeric column, a
//! boolean for a boolean one. The error says why the value does not fit;
//! the caller names the record and the column.

use crate::Cell;
use crate::dataset::{NumericCell, boolean_token, parse_number};

/// Formats a number the way a CSV usually spells it: integers without a
/// fractional part.
pub(super) fn canonical_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A numeric column's value: `None` when missing (imputed later).
pub(super) fn record_number(cell: Cell<'_>) -> Result<Option<f64>, String> {
    match cell {
        Cell::Number(x) if x.is_finite() => Ok(Some(x)),
        Cell::Number(x) => Err(format!("{x} is not a finite number")),
        Cell::Text(s) => match parse_number(s) {
            NumericCell::Value(x) => Ok(Some(x)),
            NumericCell::Missing => Ok(None),
            NumericCell::Unparsable => Err(format!("expected a number, got {:?}", truncate(s))),
        },
        Cell::Missing => Ok(None),
        Cell::Bool(_) => Err("expected a number, got a bool".to_string()),
    }
}

/// A boolean column's value: its own tokens, the usual spellings of true
/// and false, or 1/0; `None` when missing.
pub(super) fn record_boolean(
    cell: Cell<'_>,
    true_token: &str,
    false_token: &str,
) -> Result<Option<bool>, String> {
    match cell {
        Cell::Bool(b) => Ok(Some(b)),
        Cell::Missing => Ok(None),
        Cell::Text(s) => {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else if s.eq_ignore_ascii_case(true_token) {
                Ok(Some(true))
            } else if s.eq_ignore_ascii_case(false_token) {
                Ok(Some(false))
            } else {
                boolean_token(s).map(Some).ok_or_else(|| {
                    format!(
                        "expected {true_token:?} or {false_token:?}, got {:?}",
                        truncate(s)
                    )
                })
            }
        }
        Cell::Number(1.0) => Ok(Some(true)),
        Cell::Number(0.0) => Ok(Some(false)),
        Cell::Number(x) => Err(format!("expected a boolean (or 1/0), got {x}")),
    }
}

/// At most 40 characters of a value, for error messages.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_come_from_numbers_text_and_blanks() {
        assert_eq!(record_number(Cell::Number(2.5)), Ok(Some(2.5)));
        assert_eq!(record_number(Cell::Text(" 7 ")), Ok(Some(7.0)));
        assert_eq!(record_number(Cell::Text("")), Ok(None));
        assert_eq!(record_number(Cell::Missing), Ok(None));
        assert_eq!(
            record_number(Cell::Number(f64::NAN)),
            Err("NaN is not a finite number".to_string())
        );
        assert_eq!(
            record_number(Cell::Bool(true)),
            Err("expected a number, got a bool".to_string())
        );
        let long = "x".repeat(100);
        let error = record_number(Cell::Text(&long)).unwrap_err();
        assert_eq!(error, format!("expected a number, got {:?}", "x".repeat(40)));
    }

    #[test]
    fn booleans_accept_the_columns_tokens_common_spellings_and_one_or_zero() {
        let read = |cell| record_boolean(cell, "Yes", "No");
        assert_eq!(read(Cell::Text("yes")), Ok(Some(true)));
        assert_eq!(read(Cell::Text("No")), Ok(Some(false)));
        assert_eq!(read(Cell::Text("TRUE")), Ok(Some(true)));
        assert_eq!(read(Cell::Number(0.0)), Ok(Some(false)));
        assert_eq!(read(Cell::Bool(true)), Ok(Some(true)));
        assert_eq!(read(Cell::Text(" ")), Ok(None));
        assert!(read(Cell::Number(2.0)).unwrap_err().contains("got 2"));
        assert!(
            read(Cell::Text("maybe"))
                .unwrap_err()
                .contains("expected \"Yes\" or \"No\"")
        );
    }

    #[test]
    fn whole_numbers_are_spelled_without_a_fraction() {
        assert_eq!(canonical_number(3.0), "3");
        assert_eq!(canonical_number(-2.0), "-2");
        assert_eq!(canonical_number(0.5), "0.5");
        assert_eq!(canonical_number(1e20), "100000000000000000000");
    }
}
