//! Building Predict rows from CSV files and JSON objects: records (one map
//! per row) and columns (each column once, with a typed array of values).

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

/// A CSV's rows column by column, to send as `PredictRequest.columns`.
#[derive(Debug, Clone)]
pub struct ColumnTable {
    names: Vec<String>,
    /// Per column, its cells as the CSV spells them.
    cells: Vec<Vec<String>>,
    /// Per column, whether every non-empty cell is a number spelled as the
    /// server would spell it back (so sending it as a number means exactly
    /// what the text means, for any kind of column).
    numeric: Vec<bool>,
}

impl ColumnTable {
    /// Parses a CSV (header first).
    pub fn from_csv(reader: impl std::io::Read, delimiter: u8) -> Result<Self, String> {
        let mut csv = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .from_reader(reader);
        let names: Vec<String> = csv
            .headers()
            .map_err(|e| format!("cannot read the CSV header: {e}"))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let mut cells = vec![Vec::new(); names.len()];
        for row in csv.records() {
            let row = row.map_err(|e| format!("malformed CSV: {e}"))?;
            for (column, cell) in cells.iter_mut().zip(row.iter()) {
                column.push(cell.to_string());
            }
        }
        let numeric = cells
            .iter()
            .map(|column| {
                column
                    .iter()
                    .all(|cell| cell.is_empty() || exact_number(cell).is_some())
            })
            .collect();
        Ok(ColumnTable {
            names,
            cells,
            numeric,
        })
    }

    /// Data rows.
    pub fn rows(&self) -> usize {
        self.cells.first().map_or(0, Vec::len)
    }

    /// `rows` of the table (indices, in the order given) as Predict
    /// columns: numbers where every cell is one, text otherwise, and empty
    /// cells missing.
    pub fn columns(&self, rows: impl Iterator<Item = usize> + Clone) -> Vec<pb::Column> {
        self.names
            .iter()
            .zip(&self.cells)
            .zip(&self.numeric)
            .map(|((name, cells), &numeric)| {
                let picked = rows.clone().map(|r| cells[r].as_str());
                if numeric {
                    pb::Column {
                        name: name.clone(),
                        numbers: picked
                            .clone()
                            .map(|cell| exact_number(cell).unwrap_or(0.0))
                            .collect(),
                        missing: picked
                            .enumerate()
                            .filter(|(_, cell)| cell.is_empty())
                            .map(|(i, _)| i as u32)
                            .collect(),
                        ..Default::default()
                    }
                } else {
                    pb::Column {
                        name: name.clone(),
                        strings: picked.map(str::to_string).collect(),
                        ..Default::default()
                    }
                }
            })
            .collect()
    }

    /// `rows` of the table as Predict records with the same values as
    /// [`ColumnTable::columns`] gives: numbers, text, and nulls for the
    /// missing.
    pub fn records(&self, rows: impl Iterator<Item = usize>) -> Vec<pb::Record> {
        rows.map(|r| pb::Record {
            fields: self
                .names
                .iter()
                .zip(&self.cells)
                .zip(&self.numeric)
                .map(|((name, cells), &numeric)| {
                    let cell = cells[r].as_str();
                    let kind = match exact_number(cell) {
                        Some(x) if numeric => pb::value::Kind::NumberValue(x),
                        None if numeric => pb::value::Kind::NullValue(true),
                        _ => pb::value::Kind::StringValue(cell.to_string()),
                    };
                    (name.clone(), pb::Value { kind: Some(kind) })
                })
                .collect(),
        })
        .collect()
    }
}

/// `cell` as a number, when the server reads the number exactly as it
/// reads the text: a finite number, spelled the way a number is spelled
/// back (`3`, not `3.0` or ` 3`), since a categorical column looks a
/// number up by that spelling.
fn exact_number(cell: &str) -> Option<f64> {
    let x: f64 = cell.parse().ok()?;
    let spelled = if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    };
    (x.is_finite() && spelled == cell).then_some(x)
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
    fn csv_columns_are_numbers_only_where_the_number_means_the_same_as_the_text() {
        let table = ColumnTable::from_csv(
            "n,whole,decimal,word,blank\n3,1, x,0,\n0.25,2,1.0,,\n,3,2,y,\n".as_bytes(),
            b',',
        )
        .unwrap();
        assert_eq!(table.rows(), 3);
        let columns = table.columns(1..3);
        assert_eq!(columns[0].name, "n");
        assert_eq!(columns[0].numbers, [0.25, 0.0]);
        assert_eq!(columns[0].missing, [1]);
        assert_eq!(columns[1].numbers, [2.0, 3.0]);
        assert!(columns[1].missing.is_empty());
        // " x", "1.0" and "y" are text: sent as the CSV spells them.
        assert_eq!(columns[2].strings, ["1.0", "2"]);
        assert_eq!(columns[3].strings, ["", "y"]);
        // A column of blanks only: numbers, every row missing.
        assert_eq!(columns[4].numbers, [0.0, 0.0]);
        assert_eq!(columns[4].missing, [0, 1]);
        assert_eq!(exact_number("-0"), None);
        assert_eq!(exact_number("1e3"), None);
        assert_eq!(exact_number("1000"), Some(1000.0));
        assert_eq!(exact_number("NaN"), None);
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
