//! The documents stored with each version — recipe, fitted encoder,
//! metrics, dataset summary — as JSON values and back. The registry stores
//! them opaquely; only this crate reads them.

use serde::{Deserialize, Serialize};

use crate::encoder::EncoderState;
use crate::error::ModelError;
use crate::evaluation::{Curves, Evaluation};
use crate::training::{DatasetSummary, EpochReport, Recipe, TrainedVersion};

/// The `metrics` document: quality on validation rows and on rows that
/// chose nothing, and the per-epoch history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMetrics {
    /// On the rows that chose the kept epoch and the threshold: out of
    /// fold for an ensemble, the validation split before ensembles.
    pub validation: Evaluation,
    /// On rows that chose nothing (see `training::TrainedVersion::test`);
    /// absent in versions trained before ensembles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Evaluation>,
    pub history: Vec<EpochReport>,
    #[serde(default)]
    pub best_epoch: usize,
    #[serde(default)]
    pub curves: Curves,
    /// Permutation importance of the original columns, most important
    /// first.
    #[serde(default)]
    pub importance: Vec<(String, f64)>,
}

/// A version's documents, typed.
#[derive(Debug, Clone)]
pub struct VersionDocuments {
    pub recipe: Recipe,
    pub encoder: EncoderState,
    pub metrics: StoredMetrics,
    pub dataset: DatasetSummary,
}

/// A version's documents as the JSON values a registry stores.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentsJson {
    pub recipe: serde_json::Value,
    pub encoder: serde_json::Value,
    pub metrics: serde_json::Value,
    pub dataset: serde_json::Value,
}

impl VersionDocuments {
    /// The documents of a freshly trained version.
    pub fn of(trained: &TrainedVersion) -> Self {
        VersionDocuments {
            recipe: trained.recipe.clone(),
            encoder: trained.encoder.clone(),
            metrics: StoredMetrics {
                validation: trained.validation,
                test: Some(trained.test),
                history: trained.history.clone(),
                best_epoch: trained.best_epoch,
                curves: trained.curves.clone(),
                importance: trained.importance.clone(),
            },
            dataset: trained.dataset.clone(),
        }
    }

    pub fn to_json(&self) -> Result<DocumentsJson, ModelError> {
        Ok(DocumentsJson {
            recipe: to_json("recipe", &self.recipe)?,
            encoder: to_json("encoder", &self.encoder)?,
            metrics: to_json("metrics", &self.metrics)?,
            dataset: to_json("dataset", &self.dataset)?,
        })
    }

    /// Reads stored documents. The error names the document and quotes no
    /// stored value (category lists are data).
    pub fn from_json(json: &DocumentsJson) -> Result<Self, ModelError> {
        Ok(VersionDocuments {
            recipe: from_json("recipe", &json.recipe)?,
            encoder: from_json("encoder", &json.encoder)?,
            metrics: from_json("metrics", &json.metrics)?,
            dataset: from_json("dataset", &json.dataset)?,
        })
    }
}

fn to_json<T: Serialize>(document: &'static str, value: &T) -> Result<serde_json::Value, ModelError> {
    serde_json::to_value(value).map_err(|e| ModelError::CorruptDocument {
        document,
        reason: format!("cannot encode it: {}", without_values(&e.to_string())),
    })
}

fn from_json<T: for<'de> Deserialize<'de>>(
    document: &'static str,
    value: &serde_json::Value,
) -> Result<T, ModelError> {
    T::deserialize(value).map_err(|e| ModelError::CorruptDocument {
        document,
        reason: without_values(&e.to_string()),
    })
}

/// A serde error message with the stored values it quotes blanked out
/// (`invalid type: string "Nov"` → `invalid type: string "…"`), keeping
/// field names (`missing field \`baseline\``): these messages reach logs,
/// and stored category lists are data.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for inner in chars.by_ref() {
                    if inner == '"' {
                        break;
                    }
                }
                out.push_str("\"…\"");
            }
            '`' => {
                let quoted: String = chars.by_ref().take_while(|&inner| inner != '`').collect();
                let is_name = quoted.chars().all(|q| q.is_ascii_alphanumeric() || q == '_')
                    && quoted
                        .chars()
                        .next()
                        .is_some_and(|q| q.is_ascii_alphabetic() || q == '_');
                out.push('`');
                out.push_str(if is_name { &quoted } else { "…" });
                out.push('`');
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_are_blanked_and_field_names_kept() {
        assert_eq!(
            without_values("invalid type: string \"Nov\", expected f64"),
            "invalid type: string \"…\", expected f64"
        );
        assert_eq!(
            without_values("invalid value: integer `5`, expected u8"),
            "invalid value: integer `…`, expected u8"
        );
        assert_eq!(
            without_values("missing field `baseline`"),
            "missing field `baseline`"
        );
    }

    #[test]
    fn an_unreadable_document_is_named_without_its_values() {
        let json = DocumentsJson {
            recipe: serde_json::json!({"label_column": "Nov-secret"}),
            encoder: serde_json::json!({"columns": []}),
            metrics: serde_json::json!({}),
            dataset: serde_json::json!({}),
        };
        let error = VersionDocuments::from_json(&json).unwrap_err();
        assert!(
            matches!(
                error,
                ModelError::CorruptDocument {
                    document: "recipe",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(!error.to_string().contains("Nov-secret"), "{error}");
    }
}
