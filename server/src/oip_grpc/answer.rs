//! ModelInfer's answer written as bytes straight from Predict's: an
//! `inference.ModelInferResponse` with the output tensors' elements in
//! `raw_output_contents` and the answering arm and threshold as
//! parameters. The public message would build a `HashMap`, and a `String`
//! and two `Vec`s per output, only to encode and drop them.
//!
//! Owns the wire layout of the response only; which outputs there are is
//! `crate::oip`'s.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint};

use crate::oip::{Output, OutputData};

/// An encoded `inference.ModelInferResponse`, sent as is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedInferResponse(pub Bytes);

impl prost::Message for EncodedInferResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    /// Never decoded by the server; a decoder skips what it reads.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// What a ModelInfer answer says besides its outputs.
pub struct AnswerHead<'a> {
    pub model: &'a str,
    pub version: u32,
    /// The request's id, echoed.
    pub id: &'a str,
    pub arm: &'a str,
    pub threshold: f64,
}

// `ModelInferResponse`'s fields.
const MODEL_NAME: u32 = 1;
const MODEL_VERSION: u32 = 2;
const ID: u32 = 3;
const PARAMETERS: u32 = 4;
const OUTPUTS: u32 = 5;
const RAW_OUTPUT_CONTENTS: u32 = 6;
// `InferOutputTensor`'s.
const TENSOR_NAME: u32 = 1;
const TENSOR_DATATYPE: u32 = 2;
const TENSOR_SHAPE: u32 = 3;
// A map entry's, and `InferParameter`'s.
const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;
const STRING_PARAM: u32 = 3;
const DOUBLE_PARAM: u32 = 4;

/// Bytes of a length-delimited field of `len` bytes (tags below 16).
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn bytes_field(tag: u32, bytes: &[u8], buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

/// The header of a length-delimited field whose `len` bytes follow.
fn header(tag: u32, len: usize, buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// One `parameters` map entry: the key, and an `InferParameter` whose one
/// field (`param_tag`, `param_len` bytes) `write` appends.
fn parameter(key: &str, param_len: usize, buf: &mut BytesMut, write: impl FnOnce(&mut BytesMut)) {
    let entry = field_len(key.len()) + field_len(param_len);
    header(PARAMETERS, entry, buf);
    bytes_field(ENTRY_KEY, key.as_bytes(), buf);
    header(ENTRY_VALUE, param_len, buf);
    write(buf);
}

/// The answer: `head`, then `outputs` as tensors of shape [rows] with
/// their elements, little-endian, in `raw_output_contents` (what
/// tritonclient reads), in the same order.
pub fn encode(head: &AnswerHead<'_>, outputs: &[Output]) -> EncodedInferResponse {
    let version = head.version.to_string();
    let elements: usize = outputs.iter().map(|o| o.data.len() * 4 + 32 + o.name.len()).sum();
    let mut buf = BytesMut::with_capacity(64 + head.model.len() + head.id.len() + head.arm.len() + elements);
    bytes_field(MODEL_NAME, head.model.as_bytes(), &mut buf);
    bytes_field(MODEL_VERSION, version.as_bytes(), &mut buf);
    if !head.id.is_empty() {
        bytes_field(ID, head.id.as_bytes(), &mut buf);
    }
    parameter("arm", field_len(head.arm.len()), &mut buf, |buf| {
        bytes_field(STRING_PARAM, head.arm.as_bytes(), buf)
    });
    parameter("threshold", 9, &mut buf, |buf| {
        encode_key(DOUBLE_PARAM, WireType::SixtyFourBit, buf);
        buf.put_f64_le(head.threshold);
    });
    for output in outputs {
        let rows = output.data.len() as u64;
        let shape = encoded_len_varint(rows);
        let datatype = output.data.datatype();
        let tensor = field_len(output.name.len()) + field_len(datatype.len()) + field_len(shape);
        header(OUTPUTS, tensor, &mut buf);
        bytes_field(TENSOR_NAME, output.name.as_bytes(), &mut buf);
        bytes_field(TENSOR_DATATYPE, datatype.as_bytes(), &mut buf);
        header(TENSOR_SHAPE, shape, &mut buf);
        encode_varint(rows, &mut buf);
    }
    for output in outputs {
        header(RAW_OUTPUT_CONTENTS, output.data.len() * 4, &mut buf);
        match &output.data {
            OutputData::Float(values) => values.iter().for_each(|&v| buf.put_f32_le(v)),
            OutputData::Int(values) => values.iter().for_each(|&v| buf.put_i32_le(v)),
        }
    }
    EncodedInferResponse(buf.freeze())
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use serval_proto::inference as oip;

    use super::*;

    fn string(value: &str) -> oip::InferParameter {
        oip::InferParameter {
            parameter_choice: Some(oip::infer_parameter::ParameterChoice::StringParam(value.into())),
        }
    }

    #[test]
    fn the_public_message_reads_what_is_written() {
        let head = AnswerHead {
            model: "shoppers",
            version: 300,
            id: "call-7",
            arm: "canary",
            threshold: 0.375,
        };
        let outputs = [
            Output {
                name: "probability".into(),
                data: OutputData::Float(vec![0.25, 0.75]),
            },
            Output {
                name: "label".into(),
                data: OutputData::Int(vec![0, 1]),
            },
            Output {
                // Long enough for a two-byte length.
                name: format!("attribution/{}", "x".repeat(200)),
                data: OutputData::Float(vec![-1.5; 200]),
            },
        ];
        let bytes = encode(&head, &outputs).encode_to_vec();
        let read = oip::ModelInferResponse::decode(bytes.as_slice()).unwrap();
        let tensor = |name: &str, datatype: &str, rows| oip::model_infer_response::InferOutputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![rows],
            ..Default::default()
        };
        let expected = oip::ModelInferResponse {
            model_name: "shoppers".into(),
            model_version: "300".into(),
            id: "call-7".into(),
            parameters: [
                ("arm".to_string(), string("canary")),
                (
                    "threshold".to_string(),
                    oip::InferParameter {
                        parameter_choice: Some(oip::infer_parameter::ParameterChoice::DoubleParam(0.375)),
                    },
                ),
            ]
            .into_iter()
            .collect(),
            outputs: vec![
                tensor("probability", "FP32", 2),
                tensor("label", "INT32", 2),
                tensor(&outputs[2].name, "FP32", 200),
            ],
            raw_output_contents: vec![
                [0.25f32.to_le_bytes(), 0.75f32.to_le_bytes()].concat(),
                [0i32.to_le_bytes(), 1i32.to_le_bytes()].concat(),
                (-1.5f32).to_le_bytes().repeat(200),
            ],
        };
        assert_eq!(read, expected);
        // The public message's own encoding is the same length: nothing
        // extra, nothing missing.
        assert_eq!(bytes.len(), expected.encoded_len());
    }

    #[test]
    fn an_unset_arm_and_id_still_read_back() {
        let head = AnswerHead {
            model: "m",
            version: 1,
            id: "",
            arm: "",
            threshold: 0.5,
        };
        let bytes = encode(&head, &[]).encode_to_vec();
        let read = oip::ModelInferResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(read.id, "");
        assert_eq!(read.parameters["arm"], string(""));
        assert!(read.outputs.is_empty() && read.raw_output_contents.is_empty());
    }
}
