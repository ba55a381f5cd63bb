//! `serval models delete`: removes a model or one version for good, and
//! says what went and how much space the registry gave back.

use clap::Args;
use serde_json::json;
use serval_client::{ServalClient, proto as pb};

use crate::cli::CliError;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Model name.
    pub(super) model: String,
    /// Only this version [default: the whole model].
    #[arg(long)]
    version: Option<u32>,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    reason: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(mut client: ServalClient, args: DeleteArgs) -> Result<(), CliError> {
    let deleted = client
        .delete_model(&args.model, args.version, &args.reason)
        .await?;
    if args.json {
        let value = json!({
            "model": deleted.model,
            "versions": deleted.versions,
            "bytes_reclaimed": deleted.bytes_reclaimed,
            "compaction_deferred": (!deleted.compaction_deferred.is_empty()).then_some(&deleted.compaction_deferred),
        });
        println!("{value}");
    } else {
        println!("{}", summary(&deleted, args.version.is_none()));
        if !deleted.compaction_deferred.is_empty() {
            println!("Not compacted: {}", deleted.compaction_deferred);
        }
    }
    Ok(())
}

/// `Deleted shoppers version 2 (reclaimed 1.2 MiB)`, or for a whole model
/// `Deleted model shoppers: versions 1, 2, 3 (reclaimed 3.5 MiB)`.
fn summary(deleted: &pb::DeleteModelResponse, whole_model: bool) -> String {
    let versions: Vec<String> = deleted.versions.iter().map(u32::to_string).collect();
    let reclaimed = human_bytes(deleted.bytes_reclaimed);
    match (whole_model, versions.as_slice()) {
        (false, [version]) => format!(
            "Deleted {} version {version} (reclaimed {reclaimed})",
            deleted.model
        ),
        (_, [version]) => format!(
            "Deleted model {}: version {version} (reclaimed {reclaimed})",
            deleted.model
        ),
        _ => format!(
            "Deleted model {}: versions {} (reclaimed {reclaimed})",
            deleted.model,
            versions.join(", ")
        ),
    }
}

/// Bytes in binary units with one decimal: `512 B`, `3.0 KiB`, `1.2 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1_258_291), "1.2 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn summaries_name_what_went() {
        let response = |versions: Vec<u32>| pb::DeleteModelResponse {
            model: "shoppers".into(),
            versions,
            bytes_reclaimed: 1_258_291,
            compaction_deferred: String::new(),
        };
        assert_eq!(
            summary(&response(vec![2]), false),
            "Deleted shoppers version 2 (reclaimed 1.2 MiB)"
        );
        assert_eq!(
            summary(&response(vec![1, 2, 4]), true),
            "Deleted model shoppers: versions 1, 2, 4 (reclaimed 1.2 MiB)"
        );
        assert_eq!(
            summary(&response(vec![4]), true),
            "Deleted model shoppers: version 4 (reclaimed 1.2 MiB)"
        );
    }
}
