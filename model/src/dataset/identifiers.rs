//! Refuses identifier-like columns (a customer, user or order id) before
//! anything is fitted: one-hot encoding would store up to `MAX_CATEGORIES`
//! of a categorical id's raw values in the registry as the column's
//! category list, the quantiles of a numeric id would be spaced ids, and an
//! identifier carries no signal that generalises. A numeric column looks
//! like an id when every value is a different whole number; other numeric
//! columns and boolean ones store statistics, not values. Whether a refused
//! column is kept anyway is the caller's choice
//! (`TrainSpec.allow_identifier_columns`).

use super::ingest::{ColumnValues, FeatureColumn, TrainingTable};
use crate::error::ModelError;

/// The rule: a categorical column looks like an identifier when its
/// distinct non-blank values are more than this share of its non-blank
/// cells (most values occur once, so most categories would name one row)…
const MAX_DISTINCT_SHARE: f64 = 0.5;

/// …and there are at least this many of them. Below it a small table's
/// honest categories (eight colours in twelve rows) are not mistaken for
/// identifiers; a column with fewer than 20 non-blank cells is never
/// refused.
const MIN_DISTINCT: usize = 20;

/// Filled cells a numeric column needs before "every value a different
/// whole number" reads as an id: in a small table an honest count (row
/// numbers, ages of twenty people) is often all different.
const MIN_NUMERIC_IDS: usize = 1000;

/// Columns named in full in a refusal; the rest are counted.
const NAMED_COLUMNS: usize = 5;

/// Why a column looks like an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierEvidence {
    pub column: String,
    /// Distinct non-blank values.
    pub distinct: usize,
    /// Non-blank cells.
    pub cells: usize,
    /// Whether some cells were blank (`cells` is then below the row count).
    pub has_blanks: bool,
}

/// The evidence that `column` is identifier-like, or `None` when it does
/// not meet the rule.
pub fn identifier_evidence(column: &FeatureColumn) -> Option<IdentifierEvidence> {
    let (ids, dictionary) = match &column.values {
        ColumnValues::Categorical { ids, dictionary } => (ids, dictionary),
        ColumnValues::Numeric(values) => return numeric_identifier_evidence(&column.name, values),
        ColumnValues::Boolean { .. } => return None,
    };
    // Every dictionary entry occurs in some kept row; "" is the blank cell.
    let blank_id = dictionary.iter().position(String::is_empty);
    let distinct = dictionary.len() - usize::from(blank_id.is_some());
    let blanks = blank_id.map_or(0, |blank| ids.iter().filter(|&&id| id as usize == blank).count());
    let cells = ids.len() - blanks;
    let looks_like_identifier =
        distinct >= MIN_DISTINCT && distinct as f64 > MAX_DISTINCT_SHARE * cells as f64;
    looks_like_identifier.then(|| IdentifierEvidence {
        column: column.name.clone(),
        distinct,
        cells,
        has_blanks: blanks > 0,
    })
}

/// A numeric column is id-like when at least [`MIN_NUMERIC_IDS`] of its
/// cells are filled and every one holds a different whole number.
fn numeric_identifier_evidence(name: &str, values: &[f64]) -> Option<IdentifierEvidence> {
    let mut present: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if present.len() < MIN_NUMERIC_IDS || present.iter().any(|x| x.fract() != 0.0) {
        return None;
    }
    present.sort_by(f64::total_cmp);
    let cells = present.len();
    present.dedup();
    (present.len() == cells).then(|| IdentifierEvidence {
        column: name.to_string(),
        distinct: cells,
        cells,
        has_blanks: cells < values.len(),
    })
}

/// INVALID_ARGUMENT naming every identifier-like column of `table`, the
/// evidence and the fix; `Ok` when there is none.
pub fn refuse_identifier_columns(table: &TrainingTable) -> Result<(), ModelError> {
    let found: Vec<IdentifierEvidence> = table.features.iter().filter_map(identifier_evidence).collect();
    if found.is_empty() {
        return Ok(());
    }
    Err(ModelError::InvalidData(refusal(&found)))
}

fn refusal(found: &[IdentifierEvidence]) -> String {
    let names: Vec<&str> = found.iter().map(|e| e.column.as_str()).collect();
    let drop = if names.iter().all(|n| plain_word(n)) {
        format!("--drop {}", names.join(","))
    } else {
        "drop_columns, or --drop in the CLI".to_string()
    };
    if let [only] = found {
        return format!(
            "column {} looks like an identifier ({}): drop it ({drop}) or pass --allow-identifier-columns to keep it",
            quoted(&only.column),
            evidence(only)
        );
    }
    let mut listed: Vec<String> = found
        .iter()
        .take(NAMED_COLUMNS)
        .map(|e| format!("{} ({})", quoted(&e.column), evidence(e)))
        .collect();
    if found.len() > NAMED_COLUMNS {
        listed.push(format!("… {} more", found.len() - NAMED_COLUMNS));
    }
    format!(
        "columns {} look like identifiers: drop them ({drop}) or pass --allow-identifier-columns to keep them",
        listed.join(", ")
    )
}

fn evidence(e: &IdentifierEvidence) -> String {
    let rows = if e.has_blanks { "non-blank rows" } else { "rows" };
    format!("{} distinct values in {} {rows}", e.distinct, e.cells)
}

/// A column name as an error message shows it: escaped, at most 40
/// characters.
fn quoted(name: &str) -> String {
    format!("{:?}", name.chars().take(40).collect::<String>())
}

/// Whether `name` can be pasted after `--drop` as it is.
fn plain_word(name: &str) -> bool {
    name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::ColumnKind;

    fn categorical(name: &str, cells: &[String]) -> FeatureColumn {
        let mut dictionary: Vec<String> = Vec::new();
        let ids = cells
            .iter()
            .map(|cell| match dictionary.iter().position(|d| d == cell) {
                Some(id) => id as u32,
                None => {
                    dictionary.push(cell.clone());
                    dictionary.len() as u32 - 1
                }
            })
            .collect();
        FeatureColumn {
            name: name.to_string(),
            kind: ColumnKind::Categorical,
            values: ColumnValues::Categorical { ids, dictionary },
        }
    }

    fn cells(count: usize, value: impl Fn(usize) -> String) -> Vec<String> {
        (0..count).map(value).collect()
    }

    fn table(features: Vec<FeatureColumn>) -> TrainingTable {
        let rows = match &features[0].values {
            ColumnValues::Categorical { ids, .. } => ids.len(),
            _ => unreachable!(),
        };
        TrainingTable {
            header_columns: features.len() + 1,
            rows_read: rows,
            skipped_rows: 0,
            labels: vec![0.0; rows],
            features,
            sha256: String::new(),
        }
    }

    #[test]
    fn unique_values_are_identifiers() {
        let column = categorical("customerID", &cells(7043, |i| format!("{i:04}-ABCDE")));
        assert_eq!(
            identifier_evidence(&column),
            Some(IdentifierEvidence {
                column: "customerID".into(),
                distinct: 7043,
                cells: 7043,
                has_blanks: false,
            })
        );
    }

    fn numeric(name: &str, values: Vec<f64>) -> FeatureColumn {
        FeatureColumn {
            name: name.to_string(),
            kind: ColumnKind::Numeric,
            values: ColumnValues::Numeric(values),
        }
    }

    #[test]
    fn numbers_are_identifiers_when_each_is_a_different_whole_number() {
        let ids: Vec<f64> = (0..1001).map(|i| f64::from(100_000 + i * 7)).collect();
        let evidence = identifier_evidence(&numeric("account", ids.clone())).expect("an id");
        assert_eq!(
            (evidence.distinct, evidence.cells, evidence.has_blanks),
            (1001, 1001, false)
        );
        let mut with_blank = ids.clone();
        with_blank[3] = f64::NAN;
        assert!(
            identifier_evidence(&numeric("account", with_blank))
                .unwrap()
                .has_blanks
        );
        // A repeat, a fraction, or fewer than a thousand values: not an id.
        let mut repeated = ids.clone();
        repeated[5] = repeated[6];
        assert_eq!(identifier_evidence(&numeric("visits", repeated)), None);
        let mut fractional = ids.clone();
        fractional[0] = 0.5;
        assert_eq!(identifier_evidence(&numeric("duration", fractional)), None);
        assert_eq!(identifier_evidence(&numeric("small", ids[..999].to_vec())), None);
    }

    #[test]
    fn the_rule_needs_more_than_half_distinct_and_twenty_values() {
        // 50 distinct in 100 rows: exactly half is not more than half.
        let half = categorical("c", &cells(100, |i| format!("v{}", i % 50)));
        assert_eq!(identifier_evidence(&half), None);
        let over_half = categorical("c", &cells(100, |i| format!("v{}", i % 51)));
        assert!(identifier_evidence(&over_half).is_some());
        // A small table's all-distinct categories are not identifiers.
        let few = categorical("c", &cells(19, |i| format!("v{i}")));
        assert_eq!(identifier_evidence(&few), None);
        let twenty = categorical("c", &cells(20, |i| format!("v{i}")));
        assert!(identifier_evidence(&twenty).is_some());
        // Real categories repeat.
        let colours = categorical("c", &cells(5000, |i| format!("colour{}", i % 25)));
        assert_eq!(identifier_evidence(&colours), None);
    }

    #[test]
    fn blanks_count_neither_as_values_nor_as_cells() {
        // 30 unique codes among 970 blanks: mostly blank, but every code
        // that is there names one row.
        let sparse = categorical(
            "coupon",
            &cells(1000, |i| {
                if i % 33 == 0 {
                    format!("code{i}")
                } else {
                    String::new()
                }
            }),
        );
        let evidence = identifier_evidence(&sparse).expect("identifier-like");
        assert_eq!(
            (evidence.distinct, evidence.cells, evidence.has_blanks),
            (31, 31, true)
        );
    }

    #[test]
    fn boolean_columns_are_not_checked() {
        let boolean = FeatureColumn {
            name: "member".into(),
            kind: ColumnKind::Boolean,
            values: ColumnValues::Boolean {
                values: (0..100).map(|i| (i % 2) as f32).collect(),
                true_token: "yes".into(),
                false_token: "no".into(),
            },
        };
        assert_eq!(identifier_evidence(&boolean), None);
    }

    #[test]
    fn the_refusal_names_column_evidence_and_fix() {
        let ok = table(vec![categorical(
            "colour",
            &cells(100, |i| format!("c{}", i % 3)),
        )]);
        assert!(refuse_identifier_columns(&ok).is_ok());

        let one = table(vec![
            categorical("colour", &cells(100, |i| format!("c{}", i % 3))),
            categorical("customerID", &cells(100, |i| format!("id{i}"))),
        ]);
        let message = refuse_identifier_columns(&one).unwrap_err().to_string();
        assert_eq!(
            message,
            "column \"customerID\" looks like an identifier (100 distinct values in 100 rows): \
             drop it (--drop customerID) or pass --allow-identifier-columns to keep it"
        );
        assert!(!message.contains("id7"), "no values in the message: {message}");

        let two = table(vec![
            categorical("user id", &cells(100, |i| format!("u{i}"))),
            categorical("order", &cells(100, |i| format!("o{}", i % 80))),
        ]);
        let message = refuse_identifier_columns(&two).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "columns \"user id\" (100 distinct values in 100 rows), \"order\" (80 distinct values in 100 rows) \
                 look like identifiers: drop them (drop_columns, or --drop in the CLI)"
            ),
            "{message}"
        );
    }

    #[test]
    fn hostile_names_are_escaped_and_bounded() {
        let name = format!("evil\n{}", "x".repeat(5000));
        let message =
            refuse_identifier_columns(&table(vec![categorical(&name, &cells(30, |i| format!("{i}")))]))
                .unwrap_err()
                .to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.len() < 300, "{message}");
    }
}
