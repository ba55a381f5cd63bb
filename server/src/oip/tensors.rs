//! Tensors as the protocol defines them, independent of transport: the
//! datatypes Serval reads and which of Predict's column values each
//! becomes, the layout of a request's inputs (one input of shape [N] per
//! column, or one FP32 input of shape [N, input_width] with encoded rows)
//! and its checks, Serval's request parameters, and the output tensors
//! (`probability`, `label`, `attribution/{column}`). Errors name the input
//! or parameter. What the values mean for a model is `encoding`'s, reached
//! through Predict.

use std::time::Duration;

use serde::Serialize;
use serval_proto::v1 as pb;

/// The probability output's name.
pub const PROBABILITY: &str = "probability";
/// The label output's name.
pub const LABEL: &str = "label";
/// Prefix of the per-column attribution outputs (`attribution/{column}`).
pub const ATTRIBUTION: &str = "attribution/";

/// The datatypes an input may have, as an error lists them.
pub const SUPPORTED: &str = "BYTES, BOOL, FP32, FP64, INT8-INT64 or UINT8-UINT64";

/// Integer datatypes, their ranges and their size in bytes.
const INTEGERS: [(&str, i128, i128, usize); 8] = [
    ("INT8", i8::MIN as i128, i8::MAX as i128, 1),
    ("INT16", i16::MIN as i128, i16::MAX as i128, 2),
    ("INT32", i32::MIN as i128, i32::MAX as i128, 4),
    ("INT64", i64::MIN as i128, i64::MAX as i128, 8),
    ("UINT8", 0, u8::MAX as i128, 1),
    ("UINT16", 0, u16::MAX as i128, 2),
    ("UINT32", 0, u32::MAX as i128, 4),
    ("UINT64", 0, u64::MAX as i128, 8),
];

/// An input's datatype. Text columns take BYTES, boolean columns BOOL,
/// numeric columns any number; Predict checks each value against the
/// column (a number sent as BYTES text is read as a CSV cell would be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    Bytes,
    Bool,
    Fp32,
    Fp64,
    Integer {
        name: &'static str,
        min: i128,
        max: i128,
        /// Bytes per element in raw contents.
        size: usize,
    },
}

impl Datatype {
    /// `datatype` of input `input`, or why it is not one Serval reads.
    pub fn parse(input: &str, datatype: &str) -> Result<Datatype, String> {
        Ok(match datatype {
            "BYTES" => Datatype::Bytes,
            "BOOL" => Datatype::Bool,
            "FP32" => Datatype::Fp32,
            "FP64" => Datatype::Fp64,
            _ => {
                let Some(&(name, min, max, size)) = INTEGERS.iter().find(|(t, ..)| *t == datatype) else {
                    return Err(format!(
                        "input {:?}: datatype {:?} is not supported ({SUPPORTED})",
                        shorten(input),
                        shorten(datatype)
                    ));
                };
                Datatype::Integer { name, min, max, size }
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Datatype::Bytes => "BYTES",
            Datatype::Bool => "BOOL",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Integer { name, .. } => name,
        }
    }

    /// Whether the datatype holds floating-point numbers, as encoded rows
    /// must.
    pub fn is_float(self) -> bool {
        matches!(self, Datatype::Fp32 | Datatype::Fp64)
    }

    /// A whole number of an integer input, checked against the datatype's
    /// range, as Predict's number.
    pub fn whole(self, input: &str, element: usize, value: i128) -> Result<f64, String> {
        match self {
            Datatype::Integer { name, min, max, .. } if !(min..=max).contains(&value) => Err(format!(
                "input {:?}: datatype {name} needs whole numbers from {min} to {max}; element {element} is \
                 {value}",
                shorten(input)
            )),
            _ => Ok(value as f64),
        }
    }
}

/// The datatype a version's column is sent as, in model metadata.
pub fn column_datatype(column_type: i32) -> &'static str {
    match pb::ColumnType::try_from(column_type).unwrap_or(pb::ColumnType::Unspecified) {
        pb::ColumnType::Numeric => "FP32",
        pb::ColumnType::Boolean => "BOOL",
        pb::ColumnType::Categorical | pb::ColumnType::Unspecified => "BYTES",
    }
}

/// An input's name and shape, as the layout checks see it.
#[derive(Debug, Clone, Copy)]
pub struct TensorShape<'a> {
    pub name: &'a str,
    pub shape: &'a [i64],
}

/// What a request's inputs are, once their shapes are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One input per column, each of shape [rows].
    Columns { rows: usize },
    /// One input of shape [rows, width] holding encoded rows.
    Dense { rows: usize, width: usize },
}

/// The rows of a request, in one of Predict's forms.
#[derive(Debug, PartialEq)]
pub enum Rows {
    Columns(Vec<pb::Column>),
    Dense(Vec<pb::DenseRow>),
}

/// A name as an error quotes it: bounded.
pub fn shorten(name: &str) -> String {
    name.chars().take(64).collect()
}

/// How many elements `shape` holds: refused when a dimension is negative,
/// the product overflows, or there are none.
pub fn element_count(input: &str, shape: &[i64]) -> Result<usize, String> {
    // The name is shortened only for an error: this runs for every input.
    let name = || shorten(input);
    if let Some(&bad) = shape.iter().find(|&&d| d < 0) {
        return Err(format!(
            "input {:?}: shape {shape:?} has a negative dimension ({bad})",
            name()
        ));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
        .ok_or_else(|| format!("input {:?}: shape {shape:?} is too large", name()))?;
    if count == 0 {
        return Err(format!("input {:?}: shape {shape:?} has no rows", name()));
    }
    Ok(count)
}

/// Checks the inputs' names and shapes: one 2-D input alone (encoded
/// rows), or inputs of shape [N] with distinct names and the same N.
pub fn layout(inputs: &[TensorShape<'_>]) -> Result<Layout, String> {
    if inputs.is_empty() {
        return Err(
            "inputs: none given; send one input of shape [N] per column, or one FP32 input of shape \
             [N, input_width] with encoded rows"
                .to_string(),
        );
    }
    if let Some(dense) = inputs.iter().find(|input| input.shape.len() == 2) {
        if inputs.len() > 1 {
            return Err(format!(
                "input {:?}: a 2-D input carries encoded rows and must be the only input; send columns \
                 as inputs of shape [N]",
                shorten(dense.name)
            ));
        }
        element_count(dense.name, dense.shape)?;
        return Ok(Layout::Dense {
            rows: dense.shape[0] as usize,
            width: dense.shape[1] as usize,
        });
    }
    let mut first: Option<(&str, usize)> = None;
    for (i, input) in inputs.iter().enumerate() {
        if input.shape.len() != 1 {
            return Err(format!(
                "input {:?}: shape {:?} is neither [N] (one column) nor [N, input_width] (encoded rows)",
                shorten(input.name),
                input.shape
            ));
        }
        if input.name.is_empty() {
            return Err("inputs: an input has no name".to_string());
        }
        let rows = element_count(input.name, input.shape)?;
        if let Some((name, expected)) = first
            && rows != expected
        {
            return Err(format!(
                "input {:?} has {rows} rows, but input {:?} has {expected}: every column needs one value \
                 per row",
                shorten(input.name),
                shorten(name)
            ));
        }
        first.get_or_insert((input.name, rows));
        if inputs[..i].iter().any(|other| other.name == input.name) {
            return Err(format!("input {:?} appears twice", shorten(input.name)));
        }
    }
    Ok(Layout::Columns {
        rows: first.map_or(0, |(_, rows)| rows),
    })
}

/// `values` (row-major, `width` to a row) as Predict's dense rows.
pub fn dense_rows(values: &[f32], width: usize) -> Vec<pb::DenseRow> {
    values
        .chunks(width.max(1))
        .map(|row| pb::DenseRow { values: row.to_vec() })
        .collect()
}

/// The request parameters Serval reads; others (e.g. Triton's
/// `binary_data_output` or `priority`) are ignored.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct InferOptions {
    pub alias: String,
    pub routing_key: String,
    pub explain: bool,
    /// Triton's `timeout` parameter (microseconds): the call's deadline.
    pub timeout: Option<Duration>,
}

/// A request parameter's value, whatever the transport.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParameterValue<'a> {
    /// Not given (or JSON null).
    Absent,
    Bool(bool),
    Whole(i128),
    Number(f64),
    Text(&'a str),
    /// Anything else, named as an error shows it ("an array").
    Other(&'static str),
}

impl ParameterValue<'_> {
    fn kind(self) -> &'static str {
        match self {
            ParameterValue::Absent => "absent",
            ParameterValue::Bool(_) => "a boolean",
            ParameterValue::Whole(_) | ParameterValue::Number(_) => "a number",
            ParameterValue::Text(_) => "a string",
            ParameterValue::Other(kind) => kind,
        }
    }
}

impl InferOptions {
    /// Reads Serval's parameters through `get`, checking their types.
    pub fn read<'a>(get: impl Fn(&str) -> ParameterValue<'a>) -> Result<InferOptions, String> {
        let text = |key: &str| match get(key) {
            ParameterValue::Absent => Ok(String::new()),
            ParameterValue::Text(s) => Ok(s.to_string()),
            other => Err(format!("parameters.{key}: a string, not {}", other.kind())),
        };
        let alias = text("alias")?;
        let routing_key = text("routing_key")?;
        let explain = match get("explain") {
            ParameterValue::Absent => false,
            ParameterValue::Bool(b) => b,
            other => return Err(format!("parameters.explain: true or false, not {}", other.kind())),
        };
        let timeout = match get("timeout") {
            ParameterValue::Absent | ParameterValue::Whole(0) => None,
            ParameterValue::Whole(micros) => match u64::try_from(micros) {
                Ok(micros) => Some(Duration::from_micros(micros)),
                Err(_) => {
                    return Err(format!(
                        "parameters.timeout: microseconds, a whole number, not {micros}"
                    ));
                }
            },
            ParameterValue::Number(n) => {
                return Err(format!(
                    "parameters.timeout: microseconds, a whole number, not {n}"
                ));
            }
            other => return Err(format!("parameters.timeout: microseconds, not {}", other.kind())),
        };
        Ok(InferOptions {
            alias,
            routing_key,
            explain,
            timeout,
        })
    }
}

/// Refuses requested outputs that no answer can carry (attributions only
/// with `explain`; whether the answering version has the column is
/// checked with its answer).
pub fn check_output_names<'a>(names: impl IntoIterator<Item = &'a str>, explain: bool) -> Result<(), String> {
    for name in names {
        let known = name == PROBABILITY || name == LABEL || (explain && name.starts_with(ATTRIBUTION));
        if !known {
            return Err(format!(
                "outputs: no output {:?}; the outputs are {PROBABILITY:?}, {LABEL:?} and, with \
                 parameters.explain, \"{ATTRIBUTION}{{column}}\"",
                shorten(name)
            ));
        }
    }
    Ok(())
}

/// One output tensor, of shape [rows].
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub data: OutputData,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OutputData {
    /// FP32
    Float(Vec<f32>),
    /// INT32
    Int(Vec<i32>),
}

impl OutputData {
    pub fn datatype(&self) -> &'static str {
        match self {
            OutputData::Float(_) => "FP32",
            OutputData::Int(_) => "INT32",
        }
    }

    pub fn len(&self) -> usize {
        match self {
            OutputData::Float(v) => v.len(),
            OutputData::Int(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as raw contents: little-endian, row-major.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            OutputData::Float(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            OutputData::Int(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
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
/// version's original columns, in its order) — those named in `asked`, in
/// that order, or all.
pub fn outputs(
    answer: &pb::PredictResponse,
    columns: &[String],
    asked: Option<&[&str]>,
) -> Result<Vec<Output>, String> {
    let mut all = vec![
        Output {
            name: PROBABILITY.to_string(),
            data: OutputData::Float(answer.scores.clone()),
        },
        Output {
            name: LABEL.to_string(),
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
            all.push(Output {
                name: format!("{ATTRIBUTION}{column}"),
                data: OutputData::Float(data),
            });
        }
    }
    let Some(asked) = asked else {
        return Ok(all);
    };
    let mut chosen = Vec::with_capacity(asked.len());
    for name in asked {
        let at = all.iter().position(|o| o.name == *name).ok_or_else(|| {
            format!(
                "outputs: no output {:?}: version {} has no such column",
                shorten(name),
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

    fn shape<'a>(name: &'a str, shape: &'a [i64]) -> TensorShape<'a> {
        TensorShape { name, shape }
    }

    #[test]
    fn layouts_are_columns_or_one_dense_input() {
        assert_eq!(
            layout(&[shape("x", &[3]), shape("y", &[3])]),
            Ok(Layout::Columns { rows: 3 })
        );
        assert_eq!(
            layout(&[shape("input", &[2, 5])]),
            Ok(Layout::Dense { rows: 2, width: 5 })
        );
        for (inputs, expected) in [
            (vec![], "inputs: none given"),
            (
                vec![shape("x", &[1]), shape("d", &[1, 2])],
                "input \"d\": a 2-D input",
            ),
            (
                vec![shape("x", &[1, 1, 1])],
                "input \"x\": shape [1, 1, 1] is neither",
            ),
            (
                vec![shape("x", &[2]), shape("y", &[3])],
                "input \"y\" has 3 rows, but input \"x\" has 2",
            ),
            (
                vec![shape("x", &[1]), shape("x", &[1])],
                "input \"x\" appears twice",
            ),
            (vec![shape("x", &[0])], "input \"x\": shape [0] has no rows"),
            (
                vec![shape("x", &[-1])],
                "input \"x\": shape [-1] has a negative dimension",
            ),
            (vec![shape("d", &[i64::MAX, i64::MAX])], "input \"d\": shape"),
            (vec![shape("", &[1])], "inputs: an input has no name"),
        ] {
            let error = layout(&inputs).unwrap_err();
            assert!(
                error.starts_with(expected),
                "{error:?} does not start with {expected:?}"
            );
        }
    }

    #[test]
    fn datatypes_are_parsed_and_integers_checked_against_their_range() {
        assert_eq!(Datatype::parse("x", "FP32"), Ok(Datatype::Fp32));
        assert!(
            Datatype::parse("x", "FP17")
                .unwrap_err()
                .starts_with("input \"x\": datatype \"FP17\" is not supported")
        );
        let int8 = Datatype::parse("n", "INT8").unwrap();
        assert_eq!(int8.whole("n", 0, -128), Ok(-128.0));
        assert!(int8.whole("n", 2, 300).unwrap_err().starts_with(
            "input \"n\": datatype INT8 needs whole numbers from -128 to 127; element 2 is 300"
        ));
    }

    #[test]
    fn parameters_are_read_and_checked() {
        let options = InferOptions::read(|key| match key {
            "alias" => ParameterValue::Text("production"),
            "explain" => ParameterValue::Bool(true),
            "timeout" => ParameterValue::Whole(2500),
            _ => ParameterValue::Absent,
        })
        .unwrap();
        assert_eq!(options.alias, "production");
        assert!(options.explain);
        assert_eq!(options.timeout, Some(Duration::from_micros(2500)));
        for (key, value, expected) in [
            ("explain", ParameterValue::Text("yes"), "parameters.explain"),
            ("alias", ParameterValue::Whole(3), "parameters.alias"),
            ("timeout", ParameterValue::Whole(-1), "parameters.timeout"),
            ("timeout", ParameterValue::Number(1.5), "parameters.timeout"),
        ] {
            let error =
                InferOptions::read(|k| if k == key { value } else { ParameterValue::Absent }).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn outputs_are_chosen_by_name_and_attributions_follow_the_columns() {
        let attribution = |column: &str, attribution: f64| pb::Attribution {
            column: column.into(),
            attribution,
            ..Default::default()
        };
        let answer = pb::PredictResponse {
            version: 2,
            scores: vec![0.25, 0.75],
            labels: vec![false, true],
            explanations: vec![
                pb::RowExplanation {
                    attributions: vec![attribution("b", 2.0), attribution("a", -1.0)],
                    ..Default::default()
                },
                pb::RowExplanation {
                    attributions: vec![attribution("a", 3.0), attribution("b", 0.5)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let columns = ["a".to_string(), "b".to_string()];
        let all = outputs(&answer, &columns, None).unwrap();
        let names: Vec<&str> = all.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["probability", "label", "attribution/a", "attribution/b"]);
        assert_eq!(all[2].data, OutputData::Float(vec![-1.0, 3.0]));
        assert_eq!(all[3].data, OutputData::Float(vec![2.0, 0.5]));
        assert_eq!(all[1].data, OutputData::Int(vec![0, 1]));
        assert_eq!(all[1].data.to_le_bytes(), [0, 0, 0, 0, 1, 0, 0, 0]);

        let chosen = outputs(&answer, &columns, Some(&["label"])).unwrap();
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].name, "label");

        assert!(
            check_output_names(["logit"], true)
                .unwrap_err()
                .contains("\"logit\"")
        );
        assert!(check_output_names(["attribution/a"], false).is_err());
        check_output_names(["attribution/a"], true).unwrap();
        assert!(
            outputs(&answer, &columns, Some(&["attribution/zz"]))
                .unwrap_err()
                .contains("\"attribution/zz\"")
        );
    }
}
