//! The Open Inference Protocol's JSON bodies and their translation: an
//! inference request becomes Predict's columns (one input per original
//! column) or dense rows (one FP32 input of shape [N, input_width]), and
//! Predict's answer becomes output tensors. Reads JSON values and nested
//! data only; the layout checks, datatypes, parameters and outputs are the
//! protocol's, shared with gRPC (`crate::oip`). Owns no I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serval_proto::v1 as pb;

use crate::oip::tensors::{
    Datatype, InferOptions, Layout, Output, OutputData, ParameterValue, Rows, TensorShape,
    check_output_names, dense_rows, element_count, layout, shorten,
};

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

impl InferRequest {
    /// Serval's parameters, checked.
    pub fn options(&self) -> Result<InferOptions, String> {
        let Some(parameters) = &self.parameters else {
            return Ok(InferOptions::default());
        };
        InferOptions::read(|key| match parameters.get(key) {
            None | Some(Value::Null) => ParameterValue::Absent,
            Some(Value::Bool(b)) => ParameterValue::Bool(*b),
            Some(Value::String(s)) => ParameterValue::Text(s),
            Some(Value::Number(n)) => match n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)) {
                Some(whole) => ParameterValue::Whole(whole),
                None => ParameterValue::Number(n.as_f64().unwrap_or(f64::NAN)),
            },
            Some(other) => ParameterValue::Other(kind(other)),
        })
    }

    /// Refuses outputs that no answer can carry.
    pub fn check_outputs(&self, explain: bool) -> Result<(), String> {
        check_output_names(self.outputs.iter().flatten().map(|o| o.name.as_str()), explain)
    }

    /// The request's rows in Predict's form: one input per column (shape
    /// [N]), or one FP32 input of encoded rows (shape [N, input_width]).
    pub fn rows(&self) -> Result<Rows, String> {
        let shapes: Vec<TensorShape<'_>> = self
            .inputs
            .iter()
            .map(|input| TensorShape {
                name: &input.name,
                shape: &input.shape,
            })
            .collect();
        match layout(&shapes)? {
            Layout::Dense { width, .. } => dense(&self.inputs[0], width).map(Rows::Dense),
            Layout::Columns { .. } => self
                .inputs
                .iter()
                .map(column)
                .collect::<Result<_, _>>()
                .map(Rows::Columns),
        }
    }
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
    let expected = element_count(&input.name, &input.shape)?;
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
    let datatype = Datatype::parse(&input.name, &input.datatype)?;
    let values = flatten(input)?;
    let mut column = pb::Column {
        name: input.name.clone(),
        ..Default::default()
    };
    let wrong = |i: usize, wanted: &str, value: &Value| {
        format!(
            "input {name:?}: datatype {} needs {wanted} (or null); element {i} is {}",
            datatype.name(),
            kind(value)
        )
    };
    for (i, value) in values.into_iter().enumerate() {
        if value.is_null() {
            column.missing.push(i as u32);
        }
        match datatype {
            Datatype::Bytes => column.strings.push(match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => return Err(wrong(i, "strings", other)),
            }),
            Datatype::Bool => column.bools.push(match value {
                Value::Bool(b) => *b,
                Value::Null => false,
                other => return Err(wrong(i, "true or false", other)),
            }),
            Datatype::Fp32 | Datatype::Fp64 => column.numbers.push(match value {
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                Value::Null => 0.0,
                other => return Err(wrong(i, "numbers", other)),
            }),
            Datatype::Integer {
                name: integer,
                min,
                max,
                ..
            } => column.numbers.push(match value {
                Value::Number(n) => match n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)) {
                    Some(whole) => datatype.whole(&input.name, i, whole)?,
                    None => {
                        return Err(format!(
                            "input {name:?}: datatype {integer} needs whole numbers from {min} to {max}; \
                             element {i} is {n}"
                        ));
                    }
                },
                Value::Null => 0.0,
                other => return Err(wrong(i, "whole numbers", other)),
            }),
        }
    }
    Ok(column)
}

/// The one 2-D input as dense rows: FP32, shape [N, input_width].
fn dense(input: &InputTensor, width: usize) -> Result<Vec<pb::DenseRow>, String> {
    let name = shorten(&input.name);
    if input.datatype != "FP32" && input.datatype != "FP64" {
        return Err(format!(
            "input {name:?}: encoded rows (shape [N, input_width]) must be FP32, not {:?}",
            shorten(&input.datatype)
        ));
    }
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
    Ok(dense_rows(&numbers, width))
}

/// An output tensor of an inference response.
#[derive(Debug, Serialize)]
pub struct OutputTensor {
    pub name: String,
    pub datatype: &'static str,
    pub shape: [usize; 1],
    pub data: OutputData,
}

impl From<Output> for OutputTensor {
    fn from(output: Output) -> Self {
        OutputTensor {
            name: output.name,
            datatype: output.data.datatype(),
            shape: [output.data.len()],
            data: output.data,
        }
    }
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

/// Predict's answer as the output tensors `request` asks for (all when it
/// names none).
pub fn outputs(
    request: &InferRequest,
    answer: &pb::PredictResponse,
    columns: &[String],
) -> Result<Vec<OutputTensor>, String> {
    let asked: Option<Vec<&str>> = request
        .outputs
        .as_ref()
        .map(|outputs| outputs.iter().map(|o| o.name.as_str()).collect());
    let outputs = crate::oip::tensors::outputs(answer, columns, asked.as_deref())?;
    Ok(outputs.into_iter().map(OutputTensor::from).collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn json_parameters_are_read_and_checked() {
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
