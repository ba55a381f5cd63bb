//! Fitting an [`EncoderState`] on the training rows of a table: medians,
//! quantiles (or the log1p decision and standardisation for numbers with
//! few distinct values), category lists, boolean fill.

use super::{
    ColumnState, EncoderState, LOG1P_SKEWNESS, MAX_CATEGORIES, MAX_QUANTILES, MIN_QUANTILE_DISTINCT,
    MIN_QUANTILES, QUANTILE_BUDGET, RAW_LIMIT, Transform, quantile,
};
use crate::dataset::{ColumnValues, FeatureColumn, TrainingTable};

impl EncoderState {
    /// Fits every feature column of `table` on the rows in `train`.
    pub fn fit(table: &TrainingTable, train: &[usize]) -> Self {
        let numeric_columns = table
            .features
            .iter()
            .filter(|c| matches!(c.values, ColumnValues::Numeric(_)))
            .count();
        let quantiles = (QUANTILE_BUDGET / numeric_columns.max(1)).clamp(MIN_QUANTILES, MAX_QUANTILES);
        let columns = table
            .features
            .iter()
            .map(|column| ColumnState {
                name: column.name.clone(),
                transform: fit_column(column, train, quantiles),
            })
            .collect();
        EncoderState {
            columns,
            baseline: Vec::new(),
        }
    }
}

fn fit_column(column: &FeatureColumn, train: &[usize], quantiles: usize) -> Transform {
    match &column.values {
        ColumnValues::Numeric(values) => {
            let mut present: Vec<f64> = train
                .iter()
                .map(|&i| values[i])
                .filter(|x| !x.is_nan())
                .map(|x| x.clamp(-RAW_LIMIT, RAW_LIMIT))
                .collect();
            present.sort_by(f64::total_cmp);
            let median = if present.is_empty() {
                0.0
            } else if present.len() % 2 == 1 {
                present[present.len() / 2]
            } else {
                (present[present.len() / 2 - 1] + present[present.len() / 2]) / 2.0
            };
            let mut imputed: Vec<f64> = train
                .iter()
                .map(|&i| {
                    if values[i].is_nan() {
                        median
                    } else {
                        values[i].clamp(-RAW_LIMIT, RAW_LIMIT)
                    }
                })
                .collect();
            imputed.sort_by(f64::total_cmp);
            let mut distinct = imputed.clone();
            distinct.dedup();
            if distinct.len() >= MIN_QUANTILE_DISTINCT {
                return Transform::Quantile {
                    median,
                    quantiles: quantile::quantiles(&imputed, quantiles.min(imputed.len())),
                };
            }
            let log1p = present.first().is_some_and(|&min| min >= 0.0) && skewness(&present) > LOG1P_SKEWNESS;
            let transformed: Vec<f64> = train
                .iter()
                .map(|&i| {
                    let x = if values[i].is_nan() {
                        median
                    } else {
                        values[i].clamp(-RAW_LIMIT, RAW_LIMIT)
                    };
                    if log1p { x.ln_1p() } else { x }
                })
                .collect();
            let (mean, std) = mean_std(&transformed);
            Transform::Numeric {
                median,
                log1p,
                mean,
                std: if std > 1e-9 { std } else { 1.0 },
            }
        }
        ColumnValues::Categorical { ids, dictionary } => {
            let mut counts = vec![0usize; dictionary.len()];
            for &i in train {
                counts[ids[i] as usize] += 1;
            }
            let mut order: Vec<usize> = (0..dictionary.len()).filter(|&id| counts[id] > 0).collect();
            order.sort_by(|&a, &b| {
                counts[b]
                    .cmp(&counts[a])
                    .then_with(|| dictionary[a].cmp(&dictionary[b]))
            });
            order.truncate(MAX_CATEGORIES);
            Transform::Categorical {
                categories: order.into_iter().map(|id| dictionary[id].clone()).collect(),
            }
        }
        ColumnValues::Boolean {
            values,
            true_token,
            false_token,
        } => {
            let present: Vec<f64> = train
                .iter()
                .map(|&i| values[i] as f64)
                .filter(|x| !x.is_nan())
                .collect();
            let fill = if present.is_empty() {
                0.5
            } else {
                present.iter().sum::<f64>() / present.len() as f64
            };
            Transform::Boolean {
                true_token: true_token.clone(),
                false_token: false_token.clone(),
                fill,
            }
        }
    }
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn skewness(values: &[f64]) -> f64 {
    let (mean, std) = mean_std(values);
    if std < 1e-12 {
        return 0.0;
    }
    values.iter().map(|x| ((x - mean) / std).powi(3)).sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::ColumnKind;

    fn table(features: Vec<FeatureColumn>, rows: usize) -> TrainingTable {
        TrainingTable {
            header_columns: features.len() + 1,
            rows_read: rows,
            skipped_rows: 0,
            labels: (0..rows).map(|i| (i % 2) as f32).collect(),
            features,
            sha256: String::new(),
        }
    }

    fn numeric(name: &str, values: Vec<f64>) -> FeatureColumn {
        FeatureColumn {
            name: name.into(),
            kind: ColumnKind::Numeric,
            values: ColumnValues::Numeric(values),
        }
    }

    #[test]
    fn numbers_are_imputed_with_the_training_median_and_read_off_quantiles() {
        // Row 4 is not a training row: its huge value must not count.
        let t = table(vec![numeric("x", vec![1.0, f64::NAN, 3.0, 5.0, 1e9])], 5);
        let state = EncoderState::fit(&t, &[0, 1, 2, 3]);
        // Training values after imputation: 1, 3, 3, 5.
        assert_eq!(
            state.columns[0].transform,
            Transform::Quantile {
                median: 3.0,
                quantiles: vec![1.0, 3.0, 3.0, 5.0]
            }
        );
    }

    #[test]
    fn quantiles_are_bounded_per_column_and_by_the_table() {
        let rows = 300;
        let values: Vec<f64> = (0..rows).map(|i| (i * 7919 % rows) as f64).collect();
        let all: Vec<usize> = (0..rows).collect();
        let stored = |columns: usize| {
            let features = (0..columns)
                .map(|c| numeric(&format!("x{c}"), values.clone()))
                .collect();
            let state = EncoderState::fit(&table(features, rows), &all);
            match &state.columns[0].transform {
                Transform::Quantile { quantiles, .. } => quantiles.len(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(stored(1), MAX_QUANTILES);
        assert_eq!(stored(2048), QUANTILE_BUDGET / 2048);
        assert_eq!(stored(20_000), MIN_QUANTILES);
    }

    #[test]
    fn two_valued_numbers_are_standardised_with_log1p_when_skewed_and_non_negative() {
        let mut skewed = vec![0.0; 50];
        skewed.push(1000.0);
        let mut negative = vec![-1.0; 50];
        negative.push(1000.0);
        let rows = skewed.len();
        let t = table(
            vec![
                numeric("skewed", skewed),
                numeric("negative", negative),
                numeric("constant", vec![7.0; rows]),
            ],
            rows,
        );
        let all: Vec<usize> = (0..rows).collect();
        let state = EncoderState::fit(&t, &all);
        let log1p = |c: usize| match state.columns[c].transform {
            Transform::Numeric { log1p, .. } => log1p,
            ref other => panic!("column {c} fitted as {other:?}"),
        };
        assert!(log1p(0), "a skewed count column is log-transformed");
        assert!(!log1p(1), "a column with negatives is not");
        assert!(matches!(state.columns[2].transform, Transform::Numeric { std, .. } if std == 1.0));
    }

    #[test]
    fn categories_are_the_training_rows_values_most_frequent_first() {
        let dictionary: Vec<String> = ["b", "a", "c", "unseen"].iter().map(|s| s.to_string()).collect();
        // Rows: b, a, a, c, b, a; row 6 ("unseen") is not a training row.
        let ids = vec![0, 1, 1, 2, 0, 1, 3];
        let t = table(
            vec![FeatureColumn {
                name: "colour".into(),
                kind: ColumnKind::Categorical,
                values: ColumnValues::Categorical { ids, dictionary },
            }],
            7,
        );
        let state = EncoderState::fit(&t, &[0, 1, 2, 3, 4, 5]);
        assert_eq!(
            state.columns[0].transform,
            Transform::Categorical {
                categories: vec!["a".into(), "b".into(), "c".into()]
            }
        );
    }

    #[test]
    fn at_most_max_categories_are_kept() {
        let count = MAX_CATEGORIES + 10;
        let dictionary: Vec<String> = (0..count).map(|i| format!("v{i:04}")).collect();
        let ids: Vec<u32> = (0..count as u32).collect();
        let t = table(
            vec![FeatureColumn {
                name: "many".into(),
                kind: ColumnKind::Categorical,
                values: ColumnValues::Categorical { ids, dictionary },
            }],
            count,
        );
        let all: Vec<usize> = (0..count).collect();
        let state = EncoderState::fit(&t, &all);
        assert_eq!(state.columns[0].transform.width(), MAX_CATEGORIES + 1);
    }

    #[test]
    fn a_boolean_blank_is_filled_with_the_training_share_of_true() {
        let boolean = |values: Vec<f32>| FeatureColumn {
            name: "member".into(),
            kind: ColumnKind::Boolean,
            values: ColumnValues::Boolean {
                values,
                true_token: "Yes".into(),
                false_token: "No".into(),
            },
        };
        let t = table(vec![boolean(vec![1.0, 0.0, 1.0, f32::NAN, 1.0])], 5);
        let state = EncoderState::fit(&t, &[0, 1, 2, 3, 4]);
        assert!(matches!(state.columns[0].transform, Transform::Boolean { fill, .. } if fill == 0.75));
        let all_blank = table(vec![boolean(vec![f32::NAN; 3])], 3);
        let state = EncoderState::fit(&all_blank, &[0, 1, 2]);
        assert!(matches!(state.columns[0].transform, Transform::Boolean { fill, .. } if fill == 0.5));
    }
}
