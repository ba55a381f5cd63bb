//! Shapes a row's encoded-space explanation for the caller: attributions
//! summed back to the original CSV columns (a one-hot group or a
//! transformed number is one column), the row's value of each, the top k
//! by magnitude, and the rest as one sum.

use serval_proto::v1 as pb;

use serval_model::encoder::Encoder;
use serval_model::explain::EncodedExplanation;

/// Rows one explaining call may carry: each costs at least 64 extra
/// forward-and-backward passes.
pub const MAX_EXPLAIN_ROWS: usize = 256;

/// Attributions listed per row when the request does not say.
pub const DEFAULT_TOP_K: usize = 5;

/// `encoded` by original column, largest magnitude first, cut to `top_k`
/// (0 means the default); `shown` holds the row's value of each column as
/// the caller sent it (none for dense rows).
pub fn by_column(
    encoder: &Encoder,
    encoded: &EncodedExplanation,
    shown: Option<&[String]>,
    top_k: u32,
) -> pb::RowExplanation {
    let mut columns: Vec<pb::Attribution> = encoder
        .column_spans()
        .enumerate()
        .map(|(i, (name, span))| pb::Attribution {
            column: name.to_string(),
            value: shown
                .and_then(|values| values.get(i))
                .cloned()
                .unwrap_or_default(),
            attribution: encoded.attributions[span].iter().map(|&a| f64::from(a)).sum(),
        })
        .collect();
    columns.sort_by(|a, b| b.attribution.abs().total_cmp(&a.attribution.abs()));
    let keep = match top_k as usize {
        0 => DEFAULT_TOP_K,
        k => k,
    };
    let rest = columns.split_off(keep.min(columns.len()));
    pb::RowExplanation {
        attributions: columns,
        other: rest.iter().map(|a| a.attribution).sum(),
        logit: f64::from(encoded.logit),
        baseline_logit: f64::from(encoded.baseline_logit),
        completeness_gap: f64::from(encoded.completeness_gap),
        steps: encoded.steps,
    }
}
