//! The server's own reading of an `inference.ModelInferRequest`: the same
//! bytes as the public message, decoded so that an input tensor costs no
//! allocation. Each input, and each raw contents entry, stays
//! a slice of the received message (as `wire` keeps Predict's rows), and
//! is read in place: its name and datatype are slices, and its typed
//! contents are walked field by field, packed or not. The public message
//! would build two `String`s, a `HashMap` and up to eight `Vec`s per input,
//! and a `Vec` per text value.
//!
//! Owns the wire layout of the request only; what the elements mean is
//! `tensors`'.

use std::collections::HashMap;

use bytes::Bytes;
use serval_proto::inference as oip;
use smallvec::SmallVec;

use crate::oip::tensors::shorten;
use crate::wire::{FIXED32, FIXED64, LEN, Malformed, Reader, VARINT};

/// `inference.ModelInferRequest`, field for field (same tags and wire
/// types).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferCall {
    #[prost(string, tag = "1")]
    pub model_name: String,
    #[prost(string, tag = "2")]
    pub model_version: String,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(map = "string, message", tag = "4")]
    pub parameters: HashMap<String, oip::InferParameter>,
    /// Each an `InferInputTensor`, read by [`InputView::read`].
    #[prost(bytes = "bytes", repeated, tag = "5")]
    pub inputs: Vec<Bytes>,
    #[prost(message, repeated, tag = "6")]
    pub outputs: Vec<oip::model_infer_request::InferRequestedOutputTensor>,
    #[prost(bytes = "bytes", repeated, tag = "7")]
    pub raw_input_contents: Vec<Bytes>,
}

/// One input tensor, borrowed from the message.
#[derive(Debug, PartialEq)]
pub struct InputView<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    /// Kept inline up to two dimensions (every shape Serval reads).
    pub shape: SmallVec<[i64; 2]>,
    /// The encoded `InferTensorContents`, when sent.
    pub contents: Option<Contents<'a>>,
}

impl<'a> InputView<'a> {
    /// Input `index` of a request; errors name it.
    pub fn read(bytes: &'a [u8], index: usize) -> Result<InputView<'a>, String> {
        let malformed = |_| format!("inputs: input {index} is not an InferInputTensor message");
        let text = |bytes: &'a [u8], what: &str| {
            std::str::from_utf8(bytes).map_err(|_| format!("inputs: input {index}'s {what} is not UTF-8"))
        };
        let mut reader = Reader(bytes);
        let (mut name, mut datatype) = (&[][..], &[][..]);
        let mut shape = SmallVec::new();
        let mut contents = None;
        while let Some((tag, wire)) = reader.key().map_err(malformed)? {
            match (tag, wire) {
                (1, LEN) => name = reader.len_delimited().map_err(malformed)?,
                (2, LEN) => datatype = reader.len_delimited().map_err(malformed)?,
                (3, LEN) => {
                    let mut packed = Reader(reader.len_delimited().map_err(malformed)?);
                    while !packed.0.is_empty() {
                        shape.push(packed.varint().map_err(malformed)? as i64);
                    }
                }
                (3, VARINT) => shape.push(reader.varint().map_err(malformed)? as i64),
                (5, LEN) => contents = Some(Contents(reader.len_delimited().map_err(malformed)?)),
                _ => reader.skip(wire).map_err(malformed)?,
            }
        }
        Ok(InputView {
            name: text(name, "name")?,
            datatype: text(datatype, "datatype")?,
            shape,
            contents,
        })
    }
}

/// An encoded `InferTensorContents`: one repeated field per datatype
/// family, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Contents<'a>(&'a [u8]);

/// The contents' fields: name and tag, in tag order (field `tag` at `tag - 1`).
pub const CONTENTS_FIELDS: [(&str, u32); 8] = [
    ("bool_contents", 1),
    ("int_contents", 2),
    ("int64_contents", 3),
    ("uint_contents", 4),
    ("uint64_contents", 5),
    ("fp32_contents", 6),
    ("fp64_contents", 7),
    ("bytes_contents", 8),
];

/// One element of a contents field, as its wire type carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Element<'a> {
    /// bool, int32, int64, uint32, uint64 (as protobuf encodes them).
    Varint(u64),
    /// fp32's bits.
    Fixed32(u32),
    /// fp64's bits.
    Fixed64(u64),
    Bytes(&'a [u8]),
}

impl<'a> Contents<'a> {
    /// Elements in each field, in [`CONTENTS_FIELDS`]' order.
    pub fn counts(self) -> Result<[usize; 8], Malformed> {
        let mut counts = [0; 8];
        self.walk(|tag, _| counts[tag as usize - 1] += 1)?;
        Ok(counts)
    }

    /// Calls `each` for every element of field `tag`, in order, whether
    /// packed or not (a parser must accept both).
    pub fn each(self, field: u32, mut each: impl FnMut(Element<'a>)) -> Result<(), Malformed> {
        self.walk(|tag, element| {
            if tag == field {
                each(element)
            }
        })
    }

    /// Every element of every known field, with its field's tag.
    fn walk(self, mut each: impl FnMut(u32, Element<'a>)) -> Result<(), Malformed> {
        let mut reader = Reader(self.0);
        while let Some((tag, wire)) = reader.key()? {
            match (tag, wire) {
                (1..=5, VARINT) => each(tag, Element::Varint(reader.varint()?)),
                (1..=5, LEN) => {
                    let mut packed = Reader(reader.len_delimited()?);
                    while !packed.0.is_empty() {
                        each(tag, Element::Varint(packed.varint()?));
                    }
                }
                (6, FIXED32) => each(tag, Element::Fixed32(reader.fixed32()?)),
                (6, LEN) => {
                    let packed = reader.len_delimited()?;
                    if !packed.len().is_multiple_of(4) {
                        return Err(Malformed);
                    }
                    for b in packed.chunks_exact(4) {
                        each(
                            tag,
                            Element::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        );
                    }
                }
                (7, FIXED64) => each(tag, Element::Fixed64(reader.fixed64()?)),
                (7, LEN) => {
                    let packed = reader.len_delimited()?;
                    if !packed.len().is_multiple_of(8) {
                        return Err(Malformed);
                    }
                    for b in packed.chunks_exact(8) {
                        each(
                            tag,
                            Element::Fixed64(u64::from_le_bytes(b.try_into().expect("8 bytes"))),
                        );
                    }
                }
                (8, LEN) => each(tag, Element::Bytes(reader.len_delimited()?)),
                _ => reader.skip(wire)?,
            }
        }
        Ok(())
    }
}

/// The error for contents that are not a protobuf message.
pub fn malformed_contents(input: &str) -> String {
    format!(
        "input {:?}: contents are not an InferTensorContents message",
        shorten(input)
    )
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn the_public_message_reads_the_same() {
        let request = oip::ModelInferRequest {
            model_name: "shoppers".into(),
            model_version: "2".into(),
            id: "call-1".into(),
            parameters: HashMap::from([(
                "alias".to_string(),
                oip::InferParameter {
                    parameter_choice: Some(oip::infer_parameter::ParameterChoice::StringParam(
                        "production".into(),
                    )),
                },
            )]),
            inputs: vec![oip::model_infer_request::InferInputTensor {
                name: "x".into(),
                datatype: "INT32".into(),
                shape: vec![3],
                contents: Some(oip::InferTensorContents {
                    int_contents: vec![-1, 0, 300],
                    fp32_contents: vec![0.5],
                    bytes_contents: vec![b"a".to_vec()],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            outputs: vec![oip::model_infer_request::InferRequestedOutputTensor {
                name: "probability".into(),
                ..Default::default()
            }],
            raw_input_contents: vec![vec![1, 2, 3]],
        };
        let call = InferCall::decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            (
                call.model_name.as_str(),
                call.model_version.as_str(),
                call.id.as_str()
            ),
            ("shoppers", "2", "call-1")
        );
        assert_eq!(call.parameters, request.parameters);
        assert_eq!(call.outputs, request.outputs);
        assert_eq!(call.raw_input_contents, [vec![1u8, 2, 3]]);
        let input = InputView::read(&call.inputs[0], 0).unwrap();
        assert_eq!(
            (input.name, input.datatype, input.shape.as_slice()),
            ("x", "INT32", &[3i64][..])
        );
        let contents = input.contents.unwrap();
        assert_eq!(contents.counts().unwrap(), [0, 3, 0, 0, 0, 1, 0, 1]);
        let mut ints = Vec::new();
        contents
            .each(2, |e| {
                if let Element::Varint(v) = e {
                    ints.push(v as i64 as i32)
                }
            })
            .unwrap();
        assert_eq!(ints, [-1, 0, 300]);
        let mut texts = Vec::new();
        contents.each(8, |e| texts.push(e)).unwrap();
        assert_eq!(texts, [Element::Bytes(b"a")]);
    }

    #[test]
    fn unpacked_elements_read_as_packed_ones() {
        // fp32_contents (6) as two unpacked elements, then a packed run.
        let mut bytes = vec![6 << 3 | FIXED32];
        bytes.extend(1.5f32.to_le_bytes());
        bytes.push(6 << 3 | FIXED32);
        bytes.extend(2.5f32.to_le_bytes());
        bytes.extend([6 << 3 | LEN, 4]);
        bytes.extend(3.5f32.to_le_bytes());
        // bool_contents (1) unpacked.
        bytes.extend([1 << 3 | VARINT, 1]);
        let contents = Contents(&bytes);
        let mut floats = Vec::new();
        contents
            .each(6, |e| {
                if let Element::Fixed32(bits) = e {
                    floats.push(f32::from_bits(bits))
                }
            })
            .unwrap();
        assert_eq!(floats, [1.5, 2.5, 3.5]);
        assert_eq!(contents.counts().unwrap(), [1, 0, 0, 0, 0, 3, 0, 0]);
    }

    #[test]
    fn broken_inputs_and_contents_are_refused() {
        assert_eq!(
            InputView::read(&[0x0a, 5, b'x'], 2).unwrap_err(),
            "inputs: input 2 is not an InferInputTensor message"
        );
        assert_eq!(
            InputView::read(&[0x0a, 1, 0xff], 0).unwrap_err(),
            "inputs: input 0's name is not UTF-8"
        );
        // Packed fp32 of 3 bytes.
        assert_eq!(Contents(&[6 << 3 | LEN, 3, 0, 0, 0]).counts(), Err(Malformed));
    }
}
