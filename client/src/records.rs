//! Building Predict records from CSV rows and JSON objects.

use std::collections::HashMap;

use serval_proto::v1 as pb;

/// A field value as the CSV spells it.
pub fn text(value: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::StringValue(value.to_string())),
    }
}

/// Parses a CSV (header first) into one record per row, every field as the
/// text of its cell; the server interprets the text with the model's schema.
pub fn records_from_csv(reader: impl std::io::Read, delimiter: u8) -> Result<Vec<pb::Record>, String> {
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_reader(reader);
    let header: Vec<String> = csv
        .headers()
        .map_err(|e| format!("cannot read the CSV header: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut records = Vec::new();
    for row in csv.records() {
        let row = row.map_err(|e| format!("malformed CSV: {e}"))?;
        let fields: HashMap<String, pb::Value> = header
            .iter()
            .zip(row.iter())
            .map(|(name, cell)| (name.clone(), text(cell)))
            .collect();
        records.push(pb::Record { fields });
    }
    Ok(records)
}

/// Converts a JSON object (`{"column": value, …}`) into a record: numbers,
/// strings, booleans and null map to their protocol kinds.
pub fn record_from_json(object: &serde_json::Value) -> Result<pb::Record, String> {
    let serde_json::Value::Object(map) = object else {
        return Err(format!("expected a JSON object, got {object}"));
    };
    let mut fields = HashMap::with_capacity(map.len());
    for (name, value) in map {
        let kind = match value {
            serde_json::Value::Number(n) => pb::value::Kind::NumberValue(
                n.as_f64()
                    .ok_or_else(|| format!("field {name:?}: {n} is not a finite number"))?,
            ),
            serde_json::Value::String(s) => pb::value::Kind::StringValue(s.clone()),
            serde_json::Value::Bool(b) => pb::value::Kind::BoolValue(*b),
            serde_json::Value::Null => pb::value::Kind::NullValue(true),
            other => return Err(format!("field {name:?}: nested value {other} is not supported")),
        };
        fields.insert(name.clone(), pb::Value { kind: Some(kind) });
    }
    Ok(pb::Record { fields })
}

/// Accepts one JSON object or an array of objects.
pub fn records_from_json(text: &str) -> Result<Vec<pb::Record>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    match &value {
        serde_json::Value::Array(items) => items.iter().map(record_from_json).collect(),
        _ => Ok(vec![record_from_json(&value)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_text_records() {
        let records = records_from_csv("a,b\n1, x\n2,y\n".as_bytes(), b',').unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].fields["b"], text(" x"));
    }

    #[test]
    fn json_objects_keep_their_kinds() {
        let records = records_from_json(r#"[{"n": 1.5, "s": "x", "b": true, "z": null}]"#).unwrap();
        let f = &records[0].fields;
        assert_eq!(f["n"].kind, Some(pb::value::Kind::NumberValue(1.5)));
        assert_eq!(f["b"].kind, Some(pb::value::Kind::BoolValue(true)));
        assert_eq!(f["z"].kind, Some(pb::value::Kind::NullValue(true)));
        assert!(records_from_json("[1]").is_err());
        assert!(records_from_json(r#"{"a": [1]}"#).is_err());
    }
}
