//! The Open Inference Protocol's protobuf tensors and their translation:
//! a `ModelInferRequest`'s inputs, in typed `contents` or in
//! `raw_input_contents`, become Predict's columns or dense rows, and
//! Predict's answer becomes output tensors in `raw_output_contents` (which
//! tritonclient reads). Reads the wire layout of tensor elements only; the
//! layout checks, datatypes, parameters and outputs are the protocol's,
//! shared with HTTP (`crate::oip`). Owns no I/O.
//!
//! Raw contents are little-endian and row-major; a BYTES element is its
//! length as a 4-byte little-endian integer followed by its bytes, as
//! Triton lays them out. A NaN number, like an empty text, is a missing
//! value (numpy's and pandas' missing float).

use std::collections::HashMap;

use serval_proto::inference as oip;
use serval_proto::v1 as pb;

use crate::oip::tensors::{
    Datatype, InferOptions, Layout, Output, ParameterValue, Rows, TensorShape, check_output_names,
    dense_rows, layout, shorten,
};

type InputTensor = oip::model_infer_request::InferInputTensor;

/// Serval's parameters of a request, checked.
pub fn options(parameters: &HashMap<String, oip::InferParameter>) -> Result<InferOptions, String> {
    use oip::infer_parameter::ParameterChoice;
    InferOptions::read(
        |key| match parameters.get(key).and_then(|p| p.parameter_choice.as_ref()) {
            None => ParameterValue::Absent,
            Some(ParameterChoice::BoolParam(b)) => ParameterValue::Bool(*b),
            Some(ParameterChoice::Int64Param(n)) => ParameterValue::Whole(i128::from(*n)),
            Some(ParameterChoice::Uint64Param(n)) => ParameterValue::Whole(i128::from(*n)),
            Some(ParameterChoice::DoubleParam(n)) => ParameterValue::Number(*n),
            Some(ParameterChoice::StringParam(s)) => ParameterValue::Text(s),
        },
    )
}

/// The outputs a request names, checked (`None`: all).
pub fn asked_outputs(request: &oip::ModelInferRequest, explain: bool) -> Result<Option<Vec<&str>>, String> {
    if request.outputs.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = request.outputs.iter().map(|o| o.name.as_str()).collect();
    check_output_names(names.iter().copied(), explain)?;
    Ok(Some(names))
}

/// The request's rows in Predict's form: one input per column (shape
/// [N]), or one FP32 input of encoded rows (shape [N, input_width]).
pub fn rows(request: &oip::ModelInferRequest) -> Result<Rows, String> {
    let shapes: Vec<TensorShape<'_>> = request
        .inputs
        .iter()
        .map(|input| TensorShape {
            name: &input.name,
            shape: &input.shape,
        })
        .collect();
    let layout = layout(&shapes)?;
    let raw = &request.raw_input_contents;
    if !raw.is_empty() {
        if raw.len() != request.inputs.len() {
            return Err(format!(
                "raw_input_contents: {} entries for {} inputs; send one per input, in the order of inputs",
                raw.len(),
                request.inputs.len()
            ));
        }
        if let Some(input) = request.inputs.iter().find(|i| i.contents.is_some()) {
            return Err(format!(
                "input {:?}: contents and raw_input_contents are both set; use one or the other",
                shorten(&input.name)
            ));
        }
    }
    let raw_of = |i: usize| raw.get(i).map(Vec::as_slice);
    match layout {
        Layout::Dense { rows, width } => {
            let input = &request.inputs[0];
            let datatype = Datatype::parse(&input.name, &input.datatype)?;
            if !datatype.is_float() {
                return Err(format!(
                    "input {:?}: encoded rows (shape [N, input_width]) must be FP32, not {}",
                    shorten(&input.name),
                    datatype.name()
                ));
            }
            let Elements::Numbers(numbers) = elements(input, raw_of(0), datatype, rows * width)? else {
                unreachable!("a float datatype reads numbers")
            };
            let values: Vec<f32> = numbers.iter().map(|&n| n as f32).collect();
            Ok(Rows::Dense(dense_rows(&values, width)))
        }
        Layout::Columns { rows } => request
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| column(input, raw_of(i), rows))
            .collect::<Result<_, _>>()
            .map(Rows::Columns),
    }
}

/// A tensor's elements, as Predict's column holds them.
enum Elements {
    Texts(Vec<String>),
    Bools(Vec<bool>),
    Numbers(Vec<f64>),
}

fn column(input: &InputTensor, raw: Option<&[u8]>, rows: usize) -> Result<pb::Column, String> {
    let datatype = Datatype::parse(&input.name, &input.datatype)?;
    let mut column = pb::Column {
        name: input.name.clone(),
        ..Default::default()
    };
    match elements(input, raw, datatype, rows)? {
        Elements::Texts(texts) => column.strings = texts,
        Elements::Bools(bools) => column.bools = bools,
        Elements::Numbers(numbers) => {
            column.missing = (0..numbers.len() as u32)
                .filter(|&i| numbers[i as usize].is_nan())
                .collect();
            column.numbers = numbers;
        }
    }
    Ok(column)
}

/// The typed-contents field a datatype's elements travel in.
fn contents_field(datatype: Datatype) -> &'static str {
    match datatype {
        Datatype::Bytes => "bytes_contents",
        Datatype::Bool => "bool_contents",
        Datatype::Fp32 => "fp32_contents",
        Datatype::Fp64 => "fp64_contents",
        Datatype::Integer { name, .. } => match name {
            "INT64" => "int64_contents",
            "UINT64" => "uint64_contents",
            n if n.starts_with('U') => "uint_contents",
            _ => "int_contents",
        },
    }
}

/// The typed-contents fields that hold any element, for errors.
fn filled_fields(contents: &oip::InferTensorContents) -> Vec<&'static str> {
    [
        ("bool_contents", contents.bool_contents.len()),
        ("int_contents", contents.int_contents.len()),
        ("int64_contents", contents.int64_contents.len()),
        ("uint_contents", contents.uint_contents.len()),
        ("uint64_contents", contents.uint64_contents.len()),
        ("fp32_contents", contents.fp32_contents.len()),
        ("fp64_contents", contents.fp64_contents.len()),
        ("bytes_contents", contents.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, _)| name)
    .collect()
}

/// The `count` elements of `input`, from `raw` or from its typed contents,
/// checked against its shape and datatype.
fn elements(
    input: &InputTensor,
    raw: Option<&[u8]>,
    datatype: Datatype,
    count: usize,
) -> Result<Elements, String> {
    let name = shorten(&input.name);
    let shape = &input.shape;
    let Some(raw) = raw else {
        let empty = oip::InferTensorContents::default();
        let contents = input.contents.as_ref().unwrap_or(&empty);
        let field = contents_field(datatype);
        let mismatch = |found: usize| {
            let others: Vec<&str> = filled_fields(contents)
                .into_iter()
                .filter(|f| *f != field)
                .collect();
            let hint = if others.is_empty() {
                String::new()
            } else {
                format!(
                    " (values were sent in contents.{}: does the datatype match?)",
                    others.join(", ")
                )
            };
            format!(
                "input {name:?}: datatype {} with shape {shape:?} needs {count} values in contents.{field}, \
                 it has {found}{hint}",
                datatype.name()
            )
        };
        let checked = |found: usize| {
            if found == count {
                Ok(())
            } else {
                Err(mismatch(found))
            }
        };
        return match datatype {
            Datatype::Bytes => {
                checked(contents.bytes_contents.len())?;
                texts(&name, contents.bytes_contents.iter().map(Vec::as_slice))
            }
            Datatype::Bool => {
                checked(contents.bool_contents.len())?;
                Ok(Elements::Bools(contents.bool_contents.clone()))
            }
            Datatype::Fp32 => {
                checked(contents.fp32_contents.len())?;
                Ok(Elements::Numbers(
                    contents.fp32_contents.iter().map(|&x| f64::from(x)).collect(),
                ))
            }
            Datatype::Fp64 => {
                checked(contents.fp64_contents.len())?;
                Ok(Elements::Numbers(contents.fp64_contents.clone()))
            }
            Datatype::Integer { .. } => {
                let wholes: Vec<i128> = match contents_field(datatype) {
                    "int64_contents" => contents.int64_contents.iter().map(|&x| i128::from(x)).collect(),
                    "uint64_contents" => contents.uint64_contents.iter().map(|&x| i128::from(x)).collect(),
                    "uint_contents" => contents.uint_contents.iter().map(|&x| i128::from(x)).collect(),
                    _ => contents.int_contents.iter().map(|&x| i128::from(x)).collect(),
                };
                checked(wholes.len())?;
                numbers_of_wholes(&input.name, datatype, wholes)
            }
        };
    };
    if datatype == Datatype::Bytes {
        let strings = length_prefixed(raw).ok_or_else(|| {
            format!(
                "input {name:?}: raw_input_contents for BYTES must be elements each prefixed with its \
                 length (4 bytes, little-endian)"
            )
        })?;
        if strings.len() != count {
            return Err(format!(
                "input {name:?}: shape {shape:?} needs {count} values, raw_input_contents has {}",
                strings.len()
            ));
        }
        return texts(&name, strings.into_iter());
    }
    let size = match datatype {
        Datatype::Bool => 1,
        Datatype::Fp32 => 4,
        Datatype::Fp64 => 8,
        Datatype::Integer { size, .. } => size,
        Datatype::Bytes => unreachable!("handled above"),
    };
    if raw.len() != count * size {
        return Err(format!(
            "input {name:?}: datatype {} with shape {shape:?} needs {} bytes of raw_input_contents \
             ({count} values of {size} bytes), it has {}",
            datatype.name(),
            count * size,
            raw.len()
        ));
    }
    let chunks = raw.chunks_exact(size);
    Ok(match datatype {
        Datatype::Bool => Elements::Bools(raw.iter().map(|&b| b != 0).collect()),
        Datatype::Fp32 => Elements::Numbers(
            chunks
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
        ),
        Datatype::Fp64 => Elements::Numbers(
            chunks
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        Datatype::Integer { name: integer, .. } => {
            let signed = !integer.starts_with('U');
            let wholes = chunks
                .map(|b| {
                    let mut wide = [0u8; 16];
                    wide[..size].copy_from_slice(b);
                    if signed && b[size - 1] & 0x80 != 0 {
                        wide[size..].fill(0xff);
                    }
                    i128::from_le_bytes(wide)
                })
                .collect();
            numbers_of_wholes(&input.name, datatype, wholes)?
        }
        Datatype::Bytes => unreachable!("handled above"),
    })
}

fn numbers_of_wholes(input: &str, datatype: Datatype, wholes: Vec<i128>) -> Result<Elements, String> {
    wholes
        .into_iter()
        .enumerate()
        .map(|(i, w)| datatype.whole(input, i, w))
        .collect::<Result<_, _>>()
        .map(Elements::Numbers)
}

fn texts<'a>(name: &str, elements: impl Iterator<Item = &'a [u8]>) -> Result<Elements, String> {
    elements
        .enumerate()
        .map(|(i, bytes)| {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| format!("input {name:?}: element {i} is not UTF-8 text"))
        })
        .collect::<Result<_, _>>()
        .map(Elements::Texts)
}

/// Splits Triton's raw BYTES layout: each element its 4-byte
/// little-endian length, then its bytes.
fn length_prefixed(mut raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut elements = Vec::new();
    while !raw.is_empty() {
        let (length, rest) = raw.split_first_chunk::<4>()?;
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return None;
        }
        let (element, rest) = rest.split_at(length);
        elements.push(element);
        raw = rest;
    }
    Some(elements)
}

/// Output tensors with their elements in `raw_output_contents`, in the
/// same order.
pub fn raw_outputs(
    outputs: Vec<Output>,
) -> (Vec<oip::model_infer_response::InferOutputTensor>, Vec<Vec<u8>>) {
    outputs
        .into_iter()
        .map(|output| {
            let tensor = oip::model_infer_response::InferOutputTensor {
                name: output.name,
                datatype: output.data.datatype().to_string(),
                shape: vec![output.data.len() as i64],
                ..Default::default()
            };
            (tensor, output.data.to_le_bytes())
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        name: &str,
        datatype: &str,
        shape: &[i64],
        contents: Option<oip::InferTensorContents>,
    ) -> InputTensor {
        InputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            contents,
            ..Default::default()
        }
    }

    fn raw_bytes(texts: &[&str]) -> Vec<u8> {
        texts
            .iter()
            .flat_map(|t| (t.len() as u32).to_le_bytes().into_iter().chain(t.bytes()))
            .collect()
    }

    #[test]
    fn typed_and_raw_contents_read_the_same_columns() {
        let typed = oip::ModelInferRequest {
            inputs: vec![
                input(
                    "x",
                    "FP32",
                    &[2],
                    Some(oip::InferTensorContents {
                        fp32_contents: vec![1.5, f32::NAN],
                        ..Default::default()
                    }),
                ),
                input(
                    "colour",
                    "BYTES",
                    &[2],
                    Some(oip::InferTensorContents {
                        bytes_contents: vec![b"red".to_vec(), b"".to_vec()],
                        ..Default::default()
                    }),
                ),
                input(
                    "member",
                    "BOOL",
                    &[2],
                    Some(oip::InferTensorContents {
                        bool_contents: vec![true, false],
                        ..Default::default()
                    }),
                ),
                input(
                    "n",
                    "INT16",
                    &[2],
                    Some(oip::InferTensorContents {
                        int_contents: vec![-3, 300],
                        ..Default::default()
                    }),
                ),
            ],
            ..Default::default()
        };
        let raw = oip::ModelInferRequest {
            inputs: typed
                .inputs
                .iter()
                .map(|i| InputTensor {
                    contents: None,
                    ..i.clone()
                })
                .collect(),
            raw_input_contents: vec![
                [1.5f32, f32::NAN].iter().flat_map(|x| x.to_le_bytes()).collect(),
                raw_bytes(&["red", ""]),
                vec![1, 0],
                [-3i16, 300].iter().flat_map(|x| x.to_le_bytes()).collect(),
            ],
            ..Default::default()
        };
        for request in [typed, raw] {
            let Rows::Columns(columns) = rows(&request).unwrap() else {
                panic!("columns expected")
            };
            assert_eq!(columns[0].numbers[0], 1.5);
            assert_eq!(columns[0].missing, vec![1]);
            assert_eq!(columns[1].strings, vec!["red", ""]);
            assert_eq!(columns[2].bools, vec![true, false]);
            assert_eq!(columns[3].numbers, vec![-3.0, 300.0]);
        }
    }

    #[test]
    fn a_2d_fp32_input_is_dense_rows_typed_or_raw() {
        let values = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let expected = Rows::Dense(dense_rows(&values, 3));
        let typed = oip::ModelInferRequest {
            inputs: vec![input(
                "input",
                "FP32",
                &[2, 3],
                Some(oip::InferTensorContents {
                    fp32_contents: values.to_vec(),
                    ..Default::default()
                }),
            )],
            ..Default::default()
        };
        assert_eq!(rows(&typed).unwrap(), expected);
        let raw = oip::ModelInferRequest {
            inputs: vec![input("input", "FP32", &[2, 3], None)],
            raw_input_contents: vec![values.iter().flat_map(|x| x.to_le_bytes()).collect()],
            ..Default::default()
        };
        assert_eq!(rows(&raw).unwrap(), expected);
    }

    #[test]
    fn bad_inputs_are_refused_naming_the_input() {
        let fp32 = |values: Vec<f32>| {
            Some(oip::InferTensorContents {
                fp32_contents: values,
                ..Default::default()
            })
        };
        let bools = Some(oip::InferTensorContents {
            bool_contents: vec![true, false],
            ..Default::default()
        });
        let cases = [
            (
                oip::ModelInferRequest {
                    inputs: vec![input("member", "FP32", &[2], bools.clone())],
                    ..Default::default()
                },
                "input \"member\": datatype FP32 with shape [2] needs 2 values in contents.fp32_contents, it \
                 has 0 (values were sent in contents.bool_contents",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("input", "FP32", &[2, 3], fp32(vec![1.0; 5]))],
                    ..Default::default()
                },
                "input \"input\": datatype FP32 with shape [2, 3] needs 6 values",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("input", "BYTES", &[1, 2], None)],
                    raw_input_contents: vec![raw_bytes(&["a", "b"])],
                    ..Default::default()
                },
                "input \"input\": encoded rows (shape [N, input_width]) must be FP32",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("x", "FP32", &[2], None)],
                    raw_input_contents: vec![vec![0; 7]],
                    ..Default::default()
                },
                "input \"x\": datatype FP32 with shape [2] needs 8 bytes",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("c", "BYTES", &[1], None)],
                    raw_input_contents: vec![vec![9, 0, 0, 0, b'a']],
                    ..Default::default()
                },
                "input \"c\": raw_input_contents for BYTES",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("c", "BYTES", &[1], None)],
                    raw_input_contents: vec![vec![1, 0, 0, 0, 0xff]],
                    ..Default::default()
                },
                "input \"c\": element 0 is not UTF-8",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input(
                        "n",
                        "INT8",
                        &[1],
                        Some(oip::InferTensorContents {
                            int_contents: vec![300],
                            ..Default::default()
                        }),
                    )],
                    ..Default::default()
                },
                "input \"n\": datatype INT8 needs whole numbers from -128 to 127; element 0 is 300",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("x", "FP32", &[2], fp32(vec![1.0, 2.0]))],
                    raw_input_contents: vec![vec![0; 8]],
                    ..Default::default()
                },
                "input \"x\": contents and raw_input_contents are both set",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("x", "FP32", &[1], None), input("y", "FP32", &[1], None)],
                    raw_input_contents: vec![vec![0; 4]],
                    ..Default::default()
                },
                "raw_input_contents: 1 entries for 2 inputs",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("x", "FP17", &[1], fp32(vec![1.0]))],
                    ..Default::default()
                },
                "input \"x\": datatype \"FP17\" is not supported",
            ),
        ];
        for (request, expected) in cases {
            let error = rows(&request).unwrap_err();
            assert!(
                error.starts_with(expected),
                "{error:?} does not start with {expected:?}"
            );
        }
    }

    #[test]
    fn parameters_of_each_kind_are_read() {
        use oip::infer_parameter::ParameterChoice;
        let parameter = |choice| oip::InferParameter {
            parameter_choice: Some(choice),
        };
        let parameters = HashMap::from([
            (
                "alias".to_string(),
                parameter(ParameterChoice::StringParam("production".into())),
            ),
            ("explain".to_string(), parameter(ParameterChoice::BoolParam(true))),
            (
                "timeout".to_string(),
                parameter(ParameterChoice::Int64Param(2500)),
            ),
            ("priority".to_string(), parameter(ParameterChoice::Uint64Param(1))),
        ]);
        let options = options(&parameters).unwrap();
        assert_eq!(options.alias, "production");
        assert!(options.explain);
        assert_eq!(options.timeout, Some(std::time::Duration::from_micros(2500)));
        let wrong = HashMap::from([(
            "explain".to_string(),
            parameter(ParameterChoice::StringParam("yes".into())),
        )]);
        assert!(
            super::options(&wrong)
                .unwrap_err()
                .starts_with("parameters.explain")
        );
    }

    #[test]
    fn raw_outputs_are_little_endian_in_output_order() {
        let (tensors, raw) = raw_outputs(vec![
            Output {
                name: "probability".into(),
                data: crate::oip::OutputData::Float(vec![0.5]),
            },
            Output {
                name: "label".into(),
                data: crate::oip::OutputData::Int(vec![1, 0]),
            },
        ]);
        assert_eq!(tensors[0].datatype, "FP32");
        assert_eq!(tensors[1].shape, vec![2]);
        assert_eq!(raw[0], 0.5f32.to_le_bytes());
        assert_eq!(raw[1], [1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
