//! The Open Inference Protocol's JSON bodies and their translation: an
//! inference request becomes Predict's columns (one input per original
//! column) or dense rows (one FP32 input of shape [N, input_width]), and
//! Predict's answer becomes output tensors. Checks shapes, datatypes and
//! parameters, naming the input; what the values mean for a model is
//! `encoding`'s, reached through Predict. Owns no I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serval_proto::v1 as pb;

/// An inference request body.
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    pub inputs: Vec<InputTensor>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    pub data: Value,
}

/// An output the caller asks for; its parameters (e.g. `binary_data`) are
/// ignored: outputs are always JSON, which every client reads.
#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    pub name: String,
}

/// The request parameters Serval reads; others (e.g. Triton's
/// `binary_data_output`) are ignored.
#[derive(Debug, Default, PartialEq)]
pub struct InferOptions {
    pub alias: String,
    pub routing_key: String,
    pub explain: bool,
    /// Triton's `timeout` parameter (microseconds): the call's deadline.
    pub timeout: Option<Duration>,
}

/// The rows of a request, in one of Predict's forms.
#[derive(Debug, PartialEq)]
pub enum Rows {
    Columns(Vec<pb::Column>),
    Dense(Vec<pb::DenseRow>),
}

/// The probability output's name.
pub const PROBABILITY: &str = "probability";
/// The label output's name.
pub const LABEL: &str = "label";
/// Prefix of the per-column attribution outputs (`attribution/{column}`).
pub const ATTRIBUTION: &str = "attribution/";

/// Integer datatypes and their ranges.
const INTEGERS: [(&str, i128, i128); 8] = [
    ("INT8", i8::MIN as i128, i8::MAX as i128),
    ("INT16", i16::MIN as i128, i16::MAX as i128),
    ("INT32", i32::MIN as i128, i32::MAX as i128),
    ("INT64", i64::MIN as i128, i64::MAX as i128),
    ("UINT8", 0, u8::MAX as i128),
    ("UINT16", 0, u16::MAX as i128),
    ("UINT32", 0, u32::MAX as i128),
    ("UINT64", 0, u64::MAX as i128),
];

const SUPPORTED: &str = "BYTES, BOOL, FP32, FP64, INT8-INT64 or UINT8-UINT64";

impl InferRequest {
    /// Serval's parameters, checked.
    pub fn options(&self) -> Result<InferOptions, String> {
        let mut options = InferOptions::default();
        let Some(parameters) = &self.parameters else {
            return Ok(options);
        };
        let text = |key: &str| -> Result<String, String> {
            match parameters.get(key) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(format!("parameters.{key}: a string, not {}", kind(other))),
            }
        };
        options.alias = text("alias")?;
        options.routing_key = text("routing_key")?;
        options.explain = match parameters.get("explain") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(format!("parameters.explain: true or false, not {}", kind(other))),
        };
        options.timeout = match parameters.get("timeout") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(0) => None,
                Some(micros) => Some(Duration::from_micros(micros)),
                None => {
                    return Err(format!(
                        "parameters.timeout: microseconds, a whole number, not {n}"
                    ));
                }
            },
            Some(other) => return Err(format!("parameters.timeout: microseconds, not {}", kind(other))),
        };
        Ok(options)
    }

    /// Refuses outputs that no answer can carry (attributions only with
    /// `explain`; whether the answering version has the column is checked
    /// with its answer).
    pub fn check_outputs(&self, explain: bool) -> Result<(), String> {
        for output in self.outputs.iter().flatten() {
            let known = output.name == PROBABILITY
                || output.name == LABEL
                || (explain && output.name.starts_with(ATTRIBUTION));
            if !known {
                return Err(format!(
                    "outputs: no output {:?}; the outputs are {PROBABILITY:?}, {LABEL:?} and, with \
                     parameters.explain, \"{ATTRIBUTION}{{column}}\"",
                    shorten(&output.name)
                ));
            }
        }
        Ok(())
    }

    /// The request's rows in Predict's form: one input per column (shape
    /// [N]), or one FP32 input of encoded rows (shape [N, input_width]).
    pub fn rows(&self) -> Result<Rows, String> {
        if self.inputs.is_empty() {
            return Err(
                "inputs: none given; send one input of shape [N] per column, or one FP32 input \
                        of shape [N, input_width] with encoded rows"
                    .to_string(),
            );
        }
        if let Some(dense) = self.inputs.iter().find(|input| input.shape.len() == 2) {
            if self.inputs.len() > 1 {
                return Err(format!(
                    "input {:?}: a 2-D input carries encoded rows and must be the only input; send \
                     columns as inputs of shape [N]",
                    shorten(&dense.name)
                ));
            }
            return dense_rows(dense).map(Rows::Dense);
        }
        let mut columns: Vec<pb::Column> = Vec::with_capacity(self.inputs.len());
        let mut first: Option<(&str, usize)> = None;
        for input in &self.inputs {
            let column = column(input)?;
            let rows = input.shape.first().copied().unwrap_or_default() as usize;
            if let Some((name, expected)) = first
                && rows != expected
            {
                return Err(format!(
                    "input {:?} has {rows} rows, but input {:?} has {expected}: every column needs one \
                     value per row",
                    shorten(&input.name),
                    shorten(name)
                ));
            }
            first.get_or_insert((&input.name, rows));
            if columns.iter().any(|c| c.name == input.name) {
                return Err(format!("input {:?} appears twice", shorten(&input.name)));
            }
            columns.push(column);
        }
        Ok(Rows::Columns(columns))
    }
}

/// A name as an error quotes it: bounded.
fn shorten(name: &str) -> String {
    name.chars().take(64).collect()
}

/// How a JSON value is named in an error.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The input's values in row-major order, checked against its shape: flat,
/// or nested exactly as the shape says.
fn flatten(input: &InputTensor) -> Result<Vec<&Value>, String> {
    let name = shorten(&input.name);
    if let Some(&bad) = input.shape.iter().find(|&&d| d < 0) {
        return Err(format!(
            "input {name:?}: shape {:?} has a negative dimension ({bad})",
            input.shape
        ));
    }
    let expected = input
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
        .ok_or_else(|| format!("input {name:?}: shape {:?} is too large", input.shape))?;
    if expected == 0 {
        return Err(format!("input {name:?}: shape {:?} has no rows", input.shape));
    }
    let Value::Array(data) = &input.data else {
        return Err(format!(
            "input {name:?}: data must be an array, not {}",
            kind(&input.data)
        ));
    };
    let mut values = Vec::with_capacity(expected);
    if data.first().is_some_and(Value::is_array) {
        nested(data, &input.shape, &mut values).map_err(|()| {
            format!(
                "input {name:?}: nested data does not have shape {:?} (every level must hold as many \
                 values as its dimension)",
                input.shape
            )
        })?;
    } else {
        if data.len() != expected {
            return Err(format!(
                "input {name:?}: shape {:?} needs {expected} values, data has {}",
                input.shape,
                data.len()
            ));
        }
        values.extend(data.iter());
    }
    Ok(values)
}

fn nested<'a>(data: &'a [Value], shape: &[i64], out: &mut Vec<&'a Value>) -> Result<(), ()> {
    let (&dimension, inner) = shape.split_first().ok_or(())?;
    if data.len() != dimension as usize {
        return Err(());
    }
    for value in data {
        match (value, inner.is_empty()) {
            (Value::Array(values), false) => nested(values, inner, out)?,
            (Value::Array(_), true) => return Err(()),
            (_, true) => out.push(value),
            (_, false) => return Err(()),
        }
    }
    Ok(())
}

/// One column input (shape [N]) as a Predict column; `null` values are
/// missing.
fn column(input: &InputTensor) -> Result<pb::Column, String> {
    let name = shorten(&input.name);
    if input.shape.len() != 1 {
        return Err(format!(
            "input {name:?}: shape {:?} is neither [N] (one column) nor [N, input_width] (encoded rows)",
            input.shape
        ));
    }
    if input.name.is_empty() {
        return Err("inputs: an input has no name".to_string());
    }
    let values = flatten(input)?;
    let mut column = pb::Column {
        name: input.name.clone(),
        ..Default::default()
    };
    let datatype = input.datatype.as_str();
    let wrong = |i: usize, wanted: &str, value: &Value| {
        format!(
            "input {name:?}: datatype {datatype} needs {wanted} (or null); element {i} is {}",
            kind(value)
        )
    };
    for (i, value) in values.into_iter().enumerate() {
        if value.is_null() {
            column.missing.push(i as u32);
        }
        match datatype {
            "BYTES" => column.strings.push(match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => return Err(wrong(i, "strings", other)),
            }),
            "BOOL" => column.bools.push(match value {
                Value::Bool(b) => *b,
                Value::Null => false,
                other => return Err(wrong(i, "true or false", other)),
            }),
            "FP32" | "FP64" => column.numbers.push(match value {
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                Value::Null => 0.0,
                other => return Err(wrong(i, "numbers", other)),
            }),
            _ => {
                let Some(&(_, min, max)) = INTEGERS.iter().find(|(t, ..)| *t == datatype) else {
                    return Err(format!(
                        "input {name:?}: datatype {:?} is not supported ({SUPPORTED})",
                        shorten(datatype)
                    ));
                };
                column.numbers.push(match value {
                    Value::Number(n) => {
                        let whole = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
                        match whole {
                            Some(w) if (min..=max).contains(&w) => w as f64,
                            _ => {
                                return Err(format!(
                                    "input {name:?}: datatype {datatype} needs whole numbers from {min} to \
                                     {max}; element {i} is {n}"
                                ));
                            }
                        }
                    }
                    Value::Null => 0.0,
                    other => return Err(wrong(i, "whole numbers", other)),
                });
            }
        }
    }
    Ok(column)
}

/// The one 2-D input as dense rows: FP32, shape [N, input_width].
fn dense_rows(input: &InputTensor) -> Result<Vec<pb::DenseRow>, String> {
    let name = shorten(&input.name);
    if input.datatype != "FP32" && input.datatype != "FP64" {
        return Err(format!(
            "input {name:?}: encoded rows (shape [N, input_width]) must be FP32, not {:?}",
            shorten(&input.datatype)
        ));
    }
    let width = input.shape[1].max(0) as usize;
    let values = flatten(input)?;
    let numbers = values
        .into_iter()
        .enumerate()
        .map(|(i, value)| match value {
            Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN) as f32),
            other => Err(format!(
                "input {name:?}: encoded rows need numbers; element {i} is {}",
                kind(other)
            )),
        })
        .collect::<Result<Vec<f32>, String>>()?;
    Ok(numbers
        .chunks(width)
        .map(|row| pb::DenseRow { values: row.to_vec() })
        .collect())
}

/// An output tensor of an inference response.
#[derive(Debug, Serialize)]
pub struct OutputTensor {
    pub name: String,
    pub datatype: &'static str,
    pub shape: [usize; 1],
    pub data: OutputData,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum OutputData {
    Float(Vec<f32>),
    Int(Vec<i32>),
}

/// An inference response body.
#[derive(Debug, Serialize)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: String,
    pub parameters: ResponseParameters,
    pub outputs: Vec<OutputTensor>,
}

#[derive(Debug, Serialize)]
pub struct ResponseParameters {
    /// How the answering version was chosen: pinned, alias, stable, canary
    /// or latest.
    pub arm: &'static str,
    /// The version's threshold: `label` is `probability >= threshold`.
    pub threshold: f64,
}

/// The name of a Predict arm in responses.
pub fn arm_name(arm: i32) -> &'static str {
    match pb::Arm::try_from(arm).unwrap_or(pb::Arm::Unspecified) {
        pb::Arm::Unspecified => "",
        pb::Arm::Pinned => "pinned",
        pb::Arm::Alias => "alias",
        pb::Arm::Stable => "stable",
        pb::Arm::Canary => "canary",
        pb::Arm::Latest => "latest",
    }
}

/// Predict's answer as output tensors: `probability`, `label` and, when
/// explained, `attribution/{column}` for each of `columns` (the answering
/// version's original columns, in its order) — those asked for in
/// `request`, or all.
pub fn outputs(
    request: &InferRequest,
    answer: &pb::PredictResponse,
    columns: &[String],
) -> Result<Vec<OutputTensor>, String> {
    let rows = answer.scores.len();
    let mut all = vec![
        OutputTensor {
            name: PROBABILITY.to_string(),
            datatype: "FP32",
            shape: [rows],
            data: OutputData::Float(answer.scores.clone()),
        },
        OutputTensor {
            name: LABEL.to_string(),
            datatype: "INT32",
            shape: [rows],
            data: OutputData::Int(answer.labels.iter().map(|&l| i32::from(l)).collect()),
        },
    ];
    if !answer.explanations.is_empty() {
        for (c, column) in columns.iter().enumerate() {
            let data = answer
                .explanations
                .iter()
                .map(|row| {
                    // Rows list every column, largest first; most often
                    // the same order from row to row.
                    row.attributions
                        .get(c)
                        .filter(|a| a.column == *column)
                        .or_else(|| row.attributions.iter().find(|a| a.column == *column))
                        .map_or(0.0, |a| a.attribution as f32)
                })
                .collect();
            all.push(OutputTensor {
                name: format!("{ATTRIBUTION}{column}"),
                datatype: "FP32",
                shape: [rows],
                data: OutputData::Float(data),
            });
        }
    }
    let Some(asked) = &request.outputs else {
        return Ok(all);
    };
    let mut chosen = Vec::with_capacity(asked.len());
    for output in asked {
        let at = all.iter().position(|o| o.name == output.name).ok_or_else(|| {
            format!(
                "outputs: no output {:?}: version {} has no such column",
                shorten(&output.name),
                answer.version
            )
        })?;
        chosen.push(all.swap_remove(at));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> InferRequest {
        serde_json::from_value(body).expect("a request")
    }

    fn rows(body: Value) -> Result<Rows, String> {
        request(body).rows()
    }

    #[test]
    fn column_inputs_become_typed_columns_with_nulls_missing() {
        let Rows::Columns(columns) = rows(serde_json::json!({"inputs": [
            {"name": "x", "shape": [3], "datatype": "FP32", "data": [1.5, null, 3]},
            {"name": "colour", "shape": [3], "datatype": "BYTES", "data": ["red", "blue", null]},
            {"name": "member", "shape": [3], "datatype": "BOOL", "data": [true, false, true]},
            {"name": "n", "shape": [3], "datatype": "UINT8", "data": [1, 2, 255]},
        ]}))
        .unwrap() else {
            panic!("columns expected")
        };
        assert_eq!(columns[0].numbers, vec![1.5, 0.0, 3.0]);
        assert_eq!(columns[0].missing, vec![1]);
        assert_eq!(columns[1].strings, vec!["red", "blue", ""]);
        assert_eq!(columns[1].missing, vec![2]);
        assert_eq!(columns[2].bools, vec![true, false, true]);
        assert!(columns[2].missing.is_empty());
        assert_eq!(columns[3].numbers, vec![1.0, 2.0, 255.0]);
    }

    #[test]
    fn a_2d_input_is_dense_rows_flat_or_nested() {
        let flat = rows(serde_json::json!({"inputs": [
            {"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
        ]}))
        .unwrap();
        let nested = rows(serde_json::json!({"inputs": [
            {"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}
        ]}))
        .unwrap();
        let expected = Rows::Dense(vec![
            pb::DenseRow {
                values: vec![1.0, 2.0, 3.0],
            },
            pb::DenseRow {
                values: vec![4.0, 5.0, 6.0],
            },
        ]);
        assert_eq!(flat, expected);
        assert_eq!(nested, expected);
    }

    #[test]
    fn bad_inputs_are_refused_naming_the_input() {
        let cases = [
            (
                serde_json::json!([{"name": "x", "shape": [2], "datatype": "FP32", "data": ["a", "b"]}]),
                "input \"x\": datatype FP32 needs numbers",
            ),
            (
                serde_json::json!([{"name": "x", "shape": [2], "datatype": "FP17", "data": [1, 2]}]),
                "input \"x\": datatype \"FP17\" is not supported",
            ),
            (
                serde_json::json!([{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]),
                "input \"x\": shape [3] needs 3 values, data has 2",
            ),
            (
                serde_json::json!([{"name": "d", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3]]}]),
                "input \"d\": nested data does not have shape [2, 2]",
            ),
            (
                serde_json::json!([{"name": "d", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2, 3], [4]]}]),
                "input \"d\": nested data",
            ),
            (
                serde_json::json!([{"name": "d", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]),
                "input \"d\": encoded rows (shape [N, input_width]) must be FP32",
            ),
            (
                serde_json::json!([{"name": "d", "shape": [1, 2], "datatype": "FP32", "data": [1, null]}]),
                "input \"d\": encoded rows need numbers; element 1 is null",
            ),
            (
                serde_json::json!([
                    {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]},
                    {"name": "y", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]},
                ]),
                "input \"y\" has 3 rows, but input \"x\" has 2",
            ),
            (
                serde_json::json!([
                    {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                    {"name": "x", "shape": [1], "datatype": "FP32", "data": [2]},
                ]),
                "input \"x\" appears twice",
            ),
            (
                serde_json::json!([
                    {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                    {"name": "d", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
                ]),
                "input \"d\": a 2-D input carries encoded rows and must be the only input",
            ),
            (
                serde_json::json!([{"name": "x", "shape": [1, 1, 1], "datatype": "FP32", "data": [1]}]),
                "input \"x\": shape [1, 1, 1] is neither",
            ),
            (
                serde_json::json!([{"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], [2]]}]),
                "input \"x\": nested data does not have shape [2]",
            ),
            (
                serde_json::json!([{"name": "x", "shape": [0], "datatype": "FP32", "data": []}]),
                "input \"x\": shape [0] has no rows",
            ),
            (
                serde_json::json!([{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]),
                "input \"x\": shape [-1] has a negative dimension",
            ),
            (
                serde_json::json!([{"name": "n", "shape": [1], "datatype": "INT8", "data": [300]}]),
                "input \"n\": datatype INT8 needs whole numbers from -128 to 127; element 0 is 300",
            ),
            (
                serde_json::json!([{"name": "n", "shape": [1], "datatype": "INT32", "data": [1.5]}]),
                "input \"n\": datatype INT32 needs whole numbers",
            ),
            (
                serde_json::json!([{"name": "b", "shape": [1], "datatype": "BOOL", "data": [1]}]),
                "input \"b\": datatype BOOL needs true or false (or null); element 0 is a number",
            ),
            (
                serde_json::json!([{"name": "x", "shape": [1], "datatype": "FP32", "data": 1}]),
                "input \"x\": data must be an array, not a number",
            ),
            (serde_json::json!([]), "inputs: none given"),
        ];
        for (inputs, expected) in cases {
            let error = rows(serde_json::json!({ "inputs": inputs })).unwrap_err();
            assert!(
                error.starts_with(expected),
                "{error:?} does not start with {expected:?}"
            );
        }
    }

    #[test]
    fn parameters_are_read_and_checked() {
        let options = request(serde_json::json!({"inputs": [], "parameters": {
            "alias": "production", "routing_key": "user-7", "explain": true, "timeout": 2500,
            "binary_data_output": true
        }}))
        .options()
        .unwrap();
        assert_eq!(
            options,
            InferOptions {
                alias: "production".into(),
                routing_key: "user-7".into(),
                explain: true,
                timeout: Some(Duration::from_micros(2500)),
            }
        );
        for (parameters, expected) in [
            (serde_json::json!({"explain": "yes"}), "parameters.explain"),
            (serde_json::json!({"alias": 3}), "parameters.alias"),
            (serde_json::json!({"timeout": -1}), "parameters.timeout"),
        ] {
            let error = request(serde_json::json!({"inputs": [], "parameters": parameters}))
                .options()
                .unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn outputs_are_chosen_by_name_and_attributions_follow_the_columns() {
        let answer = pb::PredictResponse {
            version: 2,
            scores: vec![0.25, 0.75],
            labels: vec![false, true],
            explanations: vec![
                pb::RowExplanation {
                    attributions: vec![
                        pb::Attribution {
                            column: "b".into(),
                            attribution: 2.0,
                            ..Default::default()
                        },
                        pb::Attribution {
                            column: "a".into(),
                            attribution: -1.0,
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
                pb::RowExplanation {
                    attributions: vec![
                        pb::Attribution {
                            column: "a".into(),
                            attribution: 3.0,
                            ..Default::default()
                        },
                        pb::Attribution {
                            column: "b".into(),
                            attribution: 0.5,
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let columns = ["a".to_string(), "b".to_string()];
        let all = outputs(&request(serde_json::json!({"inputs": []})), &answer, &columns).unwrap();
        let names: Vec<&str> = all.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["probability", "label", "attribution/a", "attribution/b"]);
        assert!(matches!(&all[2].data, OutputData::Float(v) if v == &[-1.0, 3.0]));
        assert!(matches!(&all[3].data, OutputData::Float(v) if v == &[2.0, 0.5]));
        assert!(matches!(&all[1].data, OutputData::Int(v) if v == &[0, 1]));

        let asked = request(serde_json::json!({"inputs": [], "outputs": [{"name": "label"}]}));
        let chosen = outputs(&asked, &answer, &columns).unwrap();
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].name, "label");

        let unknown = request(serde_json::json!({"inputs": [], "outputs": [{"name": "logit"}]}));
        assert!(unknown.check_outputs(true).unwrap_err().contains("\"logit\""));
        let unexplained = request(serde_json::json!({"inputs": [], "outputs": [{"name": "attribution/a"}]}));
        assert!(unexplained.check_outputs(false).is_err());
        unexplained.check_outputs(true).unwrap();
        let absent = request(serde_json::json!({"inputs": [], "outputs": [{"name": "attribution/zz"}]}));
        assert!(
            outputs(&absent, &answer, &columns)
                .unwrap_err()
                .contains("\"attribution/zz\"")
        );
    }
}
