//! The Open Inference Protocol's protobuf tensors and their translation:
//! a `ModelInferRequest`'s inputs (read in place, see `call`), in typed
//! `contents` or in `raw_input_contents`, are written straight into
//! Predict's encoded columns or dense rows, and Predict's answer becomes
//! output tensors in `raw_output_contents` (which tritonclient reads).
//! Reads the wire layout of tensor elements only; the layout checks,
//! datatypes, parameters and outputs are the protocol's, shared with HTTP
//! (`crate::oip`). Owns no I/O.
//!
//! Raw contents are little-endian and row-major; a BYTES element is its
//! length as a 4-byte little-endian integer followed by its bytes, as
//! Triton lays them out. A NaN number, like an empty text, is a missing
//! value (numpy's and pandas' missing float).

use std::collections::HashMap;

use bytes::Bytes;
use serval_proto::inference as oip;

use super::call::{CONTENTS_FIELDS, Element, InferCall, InputView, malformed_contents};
use crate::oip::EncodedRows;
use crate::oip::tensors::{
    Datatype, InferOptions, Layout, ParameterValue, TensorShape, check_output_names, layout, shorten,
};
use crate::wire::{DENSE_ROW_VALUES, MessageWriter, column_field, varint_len};

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
pub fn asked_outputs(call: &InferCall, explain: bool) -> Result<Option<Vec<&str>>, String> {
    if call.outputs.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = call.outputs.iter().map(|o| o.name.as_str()).collect();
    check_output_names(names.iter().copied(), explain)?;
    Ok(Some(names))
}

/// The request's rows as Predict reads them: one input per column (shape
/// [N]) becomes one encoded `serval.v1.Column` each, one FP32 input of
/// encoded rows (shape [N, input_width]) one encoded `DenseRow` per row.
pub fn rows(call: &InferCall) -> Result<EncodedRows, String> {
    let mut inputs = Vec::with_capacity(call.inputs.len());
    for (i, bytes) in call.inputs.iter().enumerate() {
        inputs.push(InputView::read(bytes, i)?);
    }
    let shapes: Vec<TensorShape<'_>> = inputs
        .iter()
        .map(|input| TensorShape {
            name: input.name,
            shape: &input.shape,
        })
        .collect();
    let layout = layout(&shapes)?;
    let raw = &call.raw_input_contents;
    if !raw.is_empty() {
        if raw.len() != inputs.len() {
            return Err(format!(
                "raw_input_contents: {} entries for {} inputs; send one per input, in the order of inputs",
                raw.len(),
                inputs.len()
            ));
        }
        if let Some(input) = inputs.iter().find(|i| i.contents.is_some()) {
            return Err(format!(
                "input {:?}: contents and raw_input_contents are both set; use one or the other",
                shorten(input.name)
            ));
        }
    }
    let raw_of = |i: usize| raw.get(i).map(Bytes::as_ref);
    match layout {
        Layout::Dense { rows, width } => {
            let input = &inputs[0];
            let datatype = Datatype::parse(input.name, input.datatype)?;
            if !datatype.is_float() {
                return Err(format!(
                    "input {:?}: encoded rows (shape [N, input_width]) must be FP32, not {}",
                    shorten(input.name),
                    datatype.name()
                ));
            }
            let mut writer = MessageWriter::with_capacity(rows * (width * 4 + 6), rows);
            let mut written = 0;
            numbers(input, raw_of(0), datatype, rows * width, |value| {
                if written % width == 0 {
                    if written > 0 {
                        writer.end_message();
                    }
                    writer.packed(DENSE_ROW_VALUES, width * 4);
                }
                writer.f32(value as f32);
                written += 1;
            })?;
            writer.end_message();
            Ok(EncodedRows {
                columns: Vec::new(),
                dense_rows: writer.finish(),
            })
        }
        Layout::Columns { rows } => {
            // Numbers widen to doubles; the rest is about as long as sent.
            let sent: usize = call.inputs.iter().chain(raw).map(Bytes::len).sum();
            let mut writer =
                MessageWriter::with_capacity(2 * sent + inputs.len() * (rows * 8 + 16), inputs.len());
            for (i, input) in inputs.iter().enumerate() {
                column(&mut writer, input, raw_of(i), rows)?;
                writer.end_message();
            }
            Ok(EncodedRows {
                columns: writer.finish(),
                dense_rows: Vec::new(),
            })
        }
    }
}

/// Writes `input` as one `serval.v1.Column` of `rows` values.
fn column(
    writer: &mut MessageWriter,
    input: &InputView<'_>,
    raw: Option<&[u8]>,
    rows: usize,
) -> Result<(), String> {
    let datatype = Datatype::parse(input.name, input.datatype)?;
    writer.bytes_field(column_field::NAME, input.name.as_bytes());
    match datatype {
        Datatype::Bytes => texts(input, raw, rows, |text| {
            writer.bytes_field(column_field::STRINGS, text)
        }),
        Datatype::Bool => {
            writer.packed(column_field::BOOLS, rows);
            bools(input, raw, rows, |b| writer.raw(&[u8::from(b)]))
        }
        _ => {
            writer.packed(column_field::NUMBERS, rows * 8);
            let mut missing = Vec::new();
            let mut index = 0u64;
            numbers(input, raw, datatype, rows, |value| {
                if value.is_nan() {
                    missing.push(index);
                }
                writer.f64(value);
                index += 1;
            })?;
            if !missing.is_empty() {
                writer.packed(
                    column_field::MISSING,
                    missing.iter().map(|&i| varint_len(i)).sum(),
                );
                for i in missing {
                    writer.varint(i);
                }
            }
            Ok(())
        }
    }
}

/// The tag of the typed-contents field a datatype's elements travel in
/// (`InferTensorContents`' tags, as [`CONTENTS_FIELDS`] lists them).
fn contents_tag(datatype: Datatype) -> u32 {
    match datatype {
        Datatype::Bool => 1,
        Datatype::Integer { name, .. } => match name {
            "INT64" => 3,
            "UINT64" => 5,
            n if n.starts_with('U') => 4,
            _ => 2,
        },
        Datatype::Fp32 => 6,
        Datatype::Fp64 => 7,
        Datatype::Bytes => 8,
    }
}

/// The name of typed-contents field `tag`, for errors.
fn contents_name(tag: u32) -> &'static str {
    CONTENTS_FIELDS[tag as usize - 1].0
}

/// Calls `each` with the `count` elements of `input`'s typed contents in
/// the datatype's field, in one walk over the contents; the contents must
/// hold exactly that many there. `each` sees at most `count` elements
/// and no more after its first error; a wrong count is reported before
/// an element's error.
fn typed<'a>(
    input: &InputView<'a>,
    datatype: Datatype,
    count: usize,
    mut each: impl FnMut(usize, u32, Element<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let tag = contents_tag(datatype);
    let contents = input.contents.unwrap_or_default();
    let mut found = 0;
    let mut error = None;
    contents
        .each(tag, |element| {
            if found < count && error.is_none() {
                error = each(found, tag, element).err();
            }
            found += 1;
        })
        .map_err(|_| malformed_contents(input.name))?;
    if found == count {
        return error.map_or(Ok(()), Err);
    }
    // Only a wrong request pays for a second walk, to say where its
    // values went.
    let counts = contents.counts().map_err(|_| malformed_contents(input.name))?;
    let others: Vec<&str> = CONTENTS_FIELDS
        .iter()
        .zip(counts)
        .filter(|&(&(_, other), n)| n > 0 && other != tag)
        .map(|(&(name, _), _)| name)
        .collect();
    let hint = if others.is_empty() {
        String::new()
    } else {
        format!(
            " (values were sent in contents.{}: does the datatype match?)",
            others.join(", ")
        )
    };
    Err(format!(
        "input {:?}: datatype {} with shape {:?} needs {count} values in contents.{}, it has {found}{hint}",
        shorten(input.name),
        datatype.name(),
        input.shape,
        contents_name(tag)
    ))
}

/// Checks that `raw` holds `count` elements of `size` bytes.
fn raw_len(
    input: &InputView<'_>,
    datatype: Datatype,
    raw: &[u8],
    count: usize,
    size: usize,
) -> Result<(), String> {
    if raw.len() == count * size {
        return Ok(());
    }
    Err(format!(
        "input {:?}: datatype {} with shape {:?} needs {} bytes of raw_input_contents ({count} values of \
         {size} bytes), it has {}",
        shorten(input.name),
        datatype.name(),
        input.shape,
        count * size,
        raw.len()
    ))
}

/// Calls `each` with the `count` numbers of a numeric input, from `raw`
/// or its typed contents; whole numbers are checked against the
/// datatype's range.
fn numbers(
    input: &InputView<'_>,
    raw: Option<&[u8]>,
    datatype: Datatype,
    count: usize,
    mut each: impl FnMut(f64),
) -> Result<(), String> {
    let Some(raw) = raw else {
        return typed(input, datatype, count, |index, tag, element| {
            let whole = match element {
                Element::Fixed32(bits) => {
                    each(f64::from(f32::from_bits(bits)));
                    return Ok(());
                }
                Element::Fixed64(bits) => {
                    each(f64::from_bits(bits));
                    return Ok(());
                }
                // int32 travels sign-extended, uint32 as is.
                Element::Varint(v) => match tag {
                    2 => i128::from(v as i32),
                    3 => i128::from(v as i64),
                    4 => i128::from(v as u32),
                    _ => i128::from(v),
                },
                Element::Bytes(_) => unreachable!("numeric fields hold no bytes"),
            };
            datatype.whole(input.name, index, whole).map(&mut each)
        });
    };
    let size = match datatype {
        Datatype::Fp32 => 4,
        Datatype::Fp64 => 8,
        Datatype::Integer { size, .. } => size,
        Datatype::Bool | Datatype::Bytes => unreachable!("not numbers"),
    };
    raw_len(input, datatype, raw, count, size)?;
    let chunks = raw.chunks_exact(size);
    match datatype {
        Datatype::Fp32 => chunks.for_each(|b| each(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))),
        Datatype::Fp64 => chunks.for_each(|b| each(f64::from_le_bytes(b.try_into().expect("8 bytes")))),
        Datatype::Integer { name: integer, .. } => {
            let signed = !integer.starts_with('U');
            for (i, b) in chunks.enumerate() {
                let mut wide = [0u8; 16];
                wide[..size].copy_from_slice(b);
                if signed && b[size - 1] & 0x80 != 0 {
                    wide[size..].fill(0xff);
                }
                each(datatype.whole(input.name, i, i128::from_le_bytes(wide))?);
            }
        }
        Datatype::Bool | Datatype::Bytes => unreachable!("not numbers"),
    }
    Ok(())
}

/// Calls `each` with the `count` values of a BOOL input.
fn bools(
    input: &InputView<'_>,
    raw: Option<&[u8]>,
    count: usize,
    mut each: impl FnMut(bool),
) -> Result<(), String> {
    let Some(raw) = raw else {
        return typed(input, Datatype::Bool, count, |_, _, element| {
            each(element != Element::Varint(0));
            Ok(())
        });
    };
    raw_len(input, Datatype::Bool, raw, count, 1)?;
    raw.iter().for_each(|&b| each(b != 0));
    Ok(())
}

/// Calls `each` with the `count` values of a BYTES input, each checked to
/// be UTF-8 text.
fn texts(
    input: &InputView<'_>,
    raw: Option<&[u8]>,
    count: usize,
    mut each: impl FnMut(&[u8]),
) -> Result<(), String> {
    // The name is shortened only for an error: this runs for every input.
    let name = || shorten(input.name);
    let mut index = 0;
    let mut text = |bytes: &[u8]| {
        let checked = match std::str::from_utf8(bytes) {
            Ok(_) => {
                each(bytes);
                Ok(())
            }
            Err(_) => Err(format!("input {:?}: element {index} is not UTF-8 text", name())),
        };
        index += 1;
        checked
    };
    let Some(raw) = raw else {
        return typed(input, Datatype::Bytes, count, |_, _, element| match element {
            Element::Bytes(bytes) => text(bytes),
            _ => unreachable!("bytes_contents holds bytes"),
        });
    };
    let found = length_prefixed(raw, |_| Ok(())).ok_or_else(|| {
        format!(
            "input {:?}: raw_input_contents for BYTES must be elements each prefixed with its length (4 \
             bytes, little-endian)",
            name()
        )
    })??;
    if found != count {
        return Err(format!(
            "input {:?}: shape {:?} needs {count} values, raw_input_contents has {found}",
            name(),
            input.shape
        ));
    }
    length_prefixed(raw, text).expect("checked above").map(drop)
}

/// Walks Triton's raw BYTES layout (each element its 4-byte
/// little-endian length, then its bytes), calling `each` on every
/// element: the count, or `None` when the layout is broken.
fn length_prefixed(
    mut raw: &[u8],
    mut each: impl FnMut(&[u8]) -> Result<(), String>,
) -> Option<Result<usize, String>> {
    let mut count = 0;
    while !raw.is_empty() {
        let (length, rest) = raw.split_first_chunk::<4>()?;
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return None;
        }
        let (element, rest) = rest.split_at(length);
        if let Err(e) = each(element) {
            return Some(Err(e));
        }
        count += 1;
        raw = rest;
    }
    Some(Ok(count))
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use serval_proto::v1 as pb;

    use super::*;
    use crate::oip::tensors::{Rows, dense_rows};

    type InputTensor = oip::model_infer_request::InferInputTensor;

    /// The rows `rows` writes for `request`, read back as the public
    /// messages.
    fn read(request: &oip::ModelInferRequest) -> Result<Rows, String> {
        let call = InferCall::decode(request.encode_to_vec().as_slice()).unwrap();
        let rows = rows(&call)?;
        Ok(if rows.dense_rows.is_empty() {
            Rows::Columns(
                rows.columns
                    .into_iter()
                    .map(|c| pb::Column::decode(c).unwrap())
                    .collect(),
            )
        } else {
            assert!(rows.columns.is_empty());
            Rows::Dense(
                rows.dense_rows
                    .into_iter()
                    .map(|r| pb::DenseRow::decode(r).unwrap())
                    .collect(),
            )
        })
    }

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
    fn each_datatype_reads_its_own_contents_field() {
        for (datatype, field) in [
            ("BOOL", "bool_contents"),
            ("INT8", "int_contents"),
            ("INT32", "int_contents"),
            ("INT64", "int64_contents"),
            ("UINT16", "uint_contents"),
            ("UINT32", "uint_contents"),
            ("UINT64", "uint64_contents"),
            ("FP32", "fp32_contents"),
            ("FP64", "fp64_contents"),
            ("BYTES", "bytes_contents"),
        ] {
            let parsed = Datatype::parse("x", datatype).unwrap();
            assert_eq!(contents_name(contents_tag(parsed)), field, "{datatype}");
        }
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
            let Rows::Columns(columns) = read(&request).unwrap() else {
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
        assert_eq!(read(&typed).unwrap(), expected);
        let raw = oip::ModelInferRequest {
            inputs: vec![input("input", "FP32", &[2, 3], None)],
            raw_input_contents: vec![values.iter().flat_map(|x| x.to_le_bytes()).collect()],
            ..Default::default()
        };
        assert_eq!(read(&raw).unwrap(), expected);
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
            (
                oip::ModelInferRequest {
                    inputs: vec![input(
                        "c",
                        "BYTES",
                        &[2],
                        Some(oip::InferTensorContents {
                            bytes_contents: vec![b"ok".to_vec(), vec![0xc3]],
                            ..Default::default()
                        }),
                    )],
                    ..Default::default()
                },
                "input \"c\": element 1 is not UTF-8",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("c", "BYTES", &[2], None)],
                    raw_input_contents: vec![raw_bytes(&["a"])],
                    ..Default::default()
                },
                "input \"c\": shape [2] needs 2 values, raw_input_contents has 1",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("n", "UINT8", &[2], None)],
                    raw_input_contents: vec![vec![1]],
                    ..Default::default()
                },
                "input \"n\": datatype UINT8 with shape [2] needs 2 bytes of raw_input_contents (2 values of 1 \
                 bytes), it has 1",
            ),
            (
                oip::ModelInferRequest {
                    inputs: vec![input("m", "BOOL", &[3], bools.clone())],
                    ..Default::default()
                },
                "input \"m\": datatype BOOL with shape [3] needs 3 values in contents.bool_contents, it has 2",
            ),
        ];
        for (request, expected) in cases {
            let error = read(&request).unwrap_err();
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
}
