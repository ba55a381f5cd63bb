//! The server's own reading of a `serval.v1.PredictRequest`: the same bytes
//! as the public message, decoded so that no row costs an allocation.
//! Records, columns and dense rows stay slices of the received message
//! (prost reads a length-delimited field as `bytes` without copying) and
//! are read in place by the small protobuf reader below: a name or a text
//! value is a slice, and so are a column's packed numbers. The public
//! message would instead build a `HashMap` with a `String` per name and per
//! text value for every record, a `String` per value of a text column, and
//! a `Vec` per dense row.
//!
//! Predict's rows can be written the same way ([`MessageWriter`]): the
//! Open Inference Protocol's tensors become encoded columns and dense
//! rows without building the public messages first.
//!
//! It owns the wire layout only; what the values mean is `encoding`'s.

use bytes::{BufMut, Bytes, BytesMut};

/// `serval.v1.PredictRequest`, field for field (same tags and wire types;
/// `string` and `bytes` are the same on the wire).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PredictCall {
    #[prost(string, tag = "1")]
    pub model: String,
    #[prost(uint32, optional, tag = "2")]
    pub version: Option<u32>,
    /// Each a `serval.v1.Record`, read by [`record_fields`].
    #[prost(bytes = "bytes", repeated, tag = "3")]
    pub records: Vec<Bytes>,
    /// Each a `serval.v1.DenseRow`, read by [`dense_values`].
    #[prost(bytes = "bytes", repeated, tag = "4")]
    pub dense_rows: Vec<Bytes>,
    #[prost(string, tag = "5")]
    pub alias: String,
    #[prost(string, tag = "6")]
    pub routing_key: String,
    #[prost(bool, tag = "7")]
    pub explain: bool,
    #[prost(uint32, tag = "8")]
    pub top_k: u32,
    /// Each a `serval.v1.Column`, read by [`read_column`].
    #[prost(bytes = "bytes", repeated, tag = "9")]
    pub columns: Vec<Bytes>,
}

/// The message's bytes do not follow the protobuf encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// One value of a record (`serval.v1.Value`), borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireValue<'a> {
    /// No kind set.
    Unset,
    Number(f64),
    /// UTF-8 is checked by the reader of the value, not here.
    Text(&'a [u8]),
    Bool(bool),
    Null,
}

/// Wire types.
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// Calls `each(name, value)` for every field of an encoded
/// `serval.v1.Record`, in the order they were sent (a repeated name is
/// passed again; the last one wins, as for a protobuf map).
pub fn record_fields<'a>(
    record: &'a [u8],
    mut each: impl FnMut(&'a [u8], WireValue<'a>),
) -> Result<(), Malformed> {
    let mut reader = Reader(record);
    while let Some((tag, wire)) = reader.key()? {
        if (tag, wire) != (1, LEN) {
            reader.skip(wire)?;
            continue;
        }
        // A map entry: key = 1, value = 2; either may be absent.
        let mut entry = Reader(reader.len_delimited()?);
        let mut key: &[u8] = &[];
        let mut value = WireValue::Unset;
        while let Some((tag, wire)) = entry.key()? {
            match (tag, wire) {
                (1, LEN) => key = entry.len_delimited()?,
                (2, LEN) => value = read_value(entry.len_delimited()?)?,
                _ => entry.skip(wire)?,
            }
        }
        each(key, value);
    }
    Ok(())
}

/// A `serval.v1.Value`: the last kind set wins, as for a protobuf oneof.
#[inline]
fn read_value(bytes: &[u8]) -> Result<WireValue<'_>, Malformed> {
    let mut reader = Reader(bytes);
    let mut value = WireValue::Unset;
    while let Some((tag, wire)) = reader.key()? {
        value = match (tag, wire) {
            (1, FIXED64) => WireValue::Number(f64::from_bits(reader.fixed64()?)),
            (2, LEN) => WireValue::Text(reader.len_delimited()?),
            (3, VARINT) => WireValue::Bool(reader.varint()? != 0),
            (4, VARINT) => {
                reader.varint()?;
                WireValue::Null
            }
            _ => {
                reader.skip(wire)?;
                value
            }
        };
    }
    Ok(value)
}

/// Appends the values of an encoded `serval.v1.DenseRow` to `out`, packed
/// or not (a parser must accept both).
pub fn dense_values(row: &[u8], out: &mut Vec<f32>) -> Result<(), Malformed> {
    let mut reader = Reader(row);
    while let Some((tag, wire)) = reader.key()? {
        match (tag, wire) {
            (1, LEN) => {
                let packed = reader.len_delimited()?;
                if !packed.len().is_multiple_of(4) {
                    return Err(Malformed);
                }
                out.extend(
                    packed
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            (1, FIXED32) => out.push(f32::from_bits(reader.fixed32()?)),
            _ => reader.skip(wire)?,
        }
    }
    Ok(())
}

/// A `serval.v1.Column`, read in place: its name and text values are
/// slices of the message, and its numbers too when they came as one packed
/// run (as encoders send them).
#[derive(Debug, Default, PartialEq)]
pub struct ColumnRead<'a> {
    /// UTF-8 is checked by the reader of the name, not here.
    pub name: &'a [u8],
    pub numbers: Numbers<'a>,
    /// UTF-8 is checked by the reader of each value, not here.
    pub strings: Vec<&'a [u8]>,
    pub bools: Vec<bool>,
    pub missing: Vec<u32>,
}

/// A column's numbers.
#[derive(Debug, PartialEq)]
pub enum Numbers<'a> {
    /// One packed run of little-endian doubles (a whole number of them).
    Packed(&'a [u8]),
    /// Sent otherwise: one by one, or in several runs.
    Listed(Vec<f64>),
}

impl Default for Numbers<'_> {
    fn default() -> Self {
        Numbers::Packed(&[])
    }
}

impl Numbers<'_> {
    pub fn len(&self) -> usize {
        match self {
            Numbers::Packed(bytes) => bytes.len() / 8,
            Numbers::Listed(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number `i` (below `len()`).
    #[inline]
    pub fn get(&self, i: usize) -> f64 {
        match self {
            Numbers::Packed(bytes) => {
                f64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
            }
            Numbers::Listed(values) => values[i],
        }
    }

    /// The numbers as a list (a packed run converted), to add to.
    fn listed(&mut self) -> &mut Vec<f64> {
        if let Numbers::Packed(bytes) = *self {
            *self = Numbers::Listed(doubles(bytes).collect());
        }
        match self {
            Numbers::Listed(values) => values,
            Numbers::Packed(_) => unreachable!("converted above"),
        }
    }
}

fn doubles(packed: &[u8]) -> impl Iterator<Item = f64> + '_ {
    packed
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Reads an encoded `serval.v1.Column`.
pub fn read_column(column: &[u8]) -> Result<ColumnRead<'_>, Malformed> {
    let mut reader = Reader(column);
    let mut read = ColumnRead::default();
    while let Some((tag, wire)) = reader.key()? {
        match (tag, wire) {
            (1, LEN) => read.name = reader.len_delimited()?,
            (2, LEN) => {
                let packed = reader.len_delimited()?;
                if !packed.len().is_multiple_of(8) {
                    return Err(Malformed);
                }
                if read.numbers.is_empty() {
                    read.numbers = Numbers::Packed(packed);
                } else {
                    read.numbers.listed().extend(doubles(packed));
                }
            }
            (2, FIXED64) => read.numbers.listed().push(f64::from_bits(reader.fixed64()?)),
            (3, LEN) => read.strings.push(reader.len_delimited()?),
            (4, LEN) => {
                let mut packed = Reader(reader.len_delimited()?);
                while !packed.0.is_empty() {
                    read.bools.push(packed.varint()? != 0);
                }
            }
            (4, VARINT) => read.bools.push(reader.varint()? != 0),
            (5, LEN) => {
                let mut packed = Reader(reader.len_delimited()?);
                while !packed.0.is_empty() {
                    read.missing.push(packed.varint()? as u32);
                }
            }
            (5, VARINT) => read.missing.push(reader.varint()? as u32),
            _ => reader.skip(wire)?,
        }
    }
    Ok(read)
}

/// `serval.v1.Column`'s fields.
pub mod column_field {
    pub const NAME: u32 = 1;
    pub const NUMBERS: u32 = 2;
    pub const STRINGS: u32 = 3;
    pub const BOOLS: u32 = 4;
    pub const MISSING: u32 = 5;
}

/// `serval.v1.DenseRow`'s one field.
pub const DENSE_ROW_VALUES: u32 = 1;

/// Writes messages one after another into one buffer, field by field;
/// [`MessageWriter::finish`] cuts them apart without copying. A packed
/// field is its header ([`MessageWriter::packed`], given its length in
/// bytes) followed by exactly that many bytes of values.
pub struct MessageWriter {
    buf: BytesMut,
    ends: Vec<usize>,
}

impl MessageWriter {
    pub fn with_capacity(bytes: usize, messages: usize) -> Self {
        MessageWriter {
            buf: BytesMut::with_capacity(bytes),
            ends: Vec::with_capacity(messages),
        }
    }

    /// A length-delimited field: a string, bytes or one message.
    pub fn bytes_field(&mut self, tag: u32, bytes: &[u8]) {
        self.packed(tag, bytes.len());
        self.buf.put_slice(bytes);
    }

    /// The header of a packed field of `len` bytes.
    pub fn packed(&mut self, tag: u32, len: usize) {
        self.varint(u64::from(tag) << 3 | u64::from(LEN));
        self.varint(len as u64);
    }

    #[inline]
    pub fn f64(&mut self, value: f64) {
        self.buf.put_f64_le(value);
    }

    #[inline]
    pub fn f32(&mut self, value: f32) {
        self.buf.put_f32_le(value);
    }

    /// Raw bytes of a packed field's values.
    #[inline]
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
    }

    #[inline]
    pub fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.put_u8(value as u8 | 0x80);
            value >>= 7;
        }
        self.buf.put_u8(value as u8);
    }

    /// Ends the message being written.
    pub fn end_message(&mut self) {
        self.ends.push(self.buf.len());
    }

    /// The messages written, each ended by [`MessageWriter::end_message`].
    pub fn finish(self) -> Vec<Bytes> {
        let all = self.buf.freeze();
        let mut start = 0;
        self.ends
            .into_iter()
            .map(|end| {
                let message = all.slice(start..end);
                start = end;
                message
            })
            .collect()
    }
}

/// Bytes of `value` as a varint.
pub fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads fields from the front of an encoded message (any message: the
/// Open Inference Protocol's tensors are read with it too).
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    /// The next field's tag and wire type, or `None` at the end.
    #[inline]
    pub(crate) fn key(&mut self) -> Result<Option<(u32, u8)>, Malformed> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| Malformed)?;
        if tag == 0 {
            return Err(Malformed);
        }
        Ok(Some((tag, (key & 7) as u8)))
    }

    /// Skips a field's payload.
    pub(crate) fn skip(&mut self, wire: u8) -> Result<(), Malformed> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            // Groups (3, 4) are long deprecated and none of these messages
            // has one; anything else is not a wire type.
            _ => Err(Malformed),
        }
    }

    #[inline]
    pub(crate) fn len_delimited(&mut self) -> Result<&'a [u8], Malformed> {
        let len = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
        self.take(len)
    }

    #[inline]
    pub(crate) fn fixed64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| Malformed)?,
        ))
    }

    #[inline]
    pub(crate) fn fixed32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| Malformed)?,
        ))
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, Malformed> {
        // Tags and short lengths: one byte.
        if let Some((&byte, rest)) = self.0.split_first()
            && byte < 0x80
        {
            self.0 = rest;
            return Ok(u64::from(byte));
        }
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err(Malformed)
    }

    #[inline]
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], Malformed> {
        if len > self.0.len() {
            return Err(Malformed);
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use serval_proto::v1 as pb;

    use super::*;

    fn value(kind: pb::value::Kind) -> pb::Value {
        pb::Value { kind: Some(kind) }
    }

    #[test]
    fn the_public_message_reads_the_same() {
        let record = pb::Record {
            fields: [
                ("n".to_string(), value(pb::value::Kind::NumberValue(-2.5))),
                (
                    "s".to_string(),
                    value(pb::value::Kind::StringValue("héllo".into())),
                ),
                ("b".to_string(), value(pb::value::Kind::BoolValue(true))),
                ("z".to_string(), value(pb::value::Kind::NullValue(true))),
                ("u".to_string(), pb::Value { kind: None }),
                ("".to_string(), value(pb::value::Kind::StringValue(String::new()))),
            ]
            .into_iter()
            .collect(),
        };
        let request = pb::PredictRequest {
            model: "m".into(),
            version: Some(3),
            records: vec![record.clone(), pb::Record::default()],
            dense_rows: vec![pb::DenseRow {
                values: vec![1.0, -0.5, f32::MAX],
            }],
            alias: "a".into(),
            routing_key: "k".into(),
            explain: true,
            top_k: 4,
            columns: vec![pb::Column {
                name: "c".into(),
                numbers: vec![1.0, 2.0],
                strings: vec!["x".into(), String::new()],
                bools: vec![false, true],
                missing: vec![1],
            }],
        };
        let call = PredictCall::decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(call.model, "m");
        assert_eq!(call.version, Some(3));
        assert_eq!((call.alias.as_str(), call.routing_key.as_str()), ("a", "k"));
        assert!(call.explain);
        assert_eq!(call.top_k, 4);
        assert_eq!(call.records.len(), 2);

        let mut fields = Vec::new();
        record_fields(&call.records[0], |name, value| {
            fields.push((String::from_utf8(name.to_vec()).unwrap(), value))
        })
        .unwrap();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            fields,
            [
                ("".to_string(), WireValue::Text(b"")),
                ("b".to_string(), WireValue::Bool(true)),
                ("n".to_string(), WireValue::Number(-2.5)),
                ("s".to_string(), WireValue::Text("héllo".as_bytes())),
                ("u".to_string(), WireValue::Unset),
                ("z".to_string(), WireValue::Null),
            ]
        );
        let mut none = 0;
        record_fields(&call.records[1], |_, _| none += 1).unwrap();
        assert_eq!(none, 0);

        let mut values = Vec::new();
        dense_values(&call.dense_rows[0], &mut values).unwrap();
        assert_eq!(values, [1.0, -0.5, f32::MAX]);

        let column = read_column(&call.columns[0]).unwrap();
        assert_eq!(column.name, b"c");
        assert_eq!(column.numbers.len(), 2);
        assert_eq!((column.numbers.get(0), column.numbers.get(1)), (1.0, 2.0));
        assert!(matches!(column.numbers, Numbers::Packed(_)));
        assert_eq!(column.strings, [&b"x"[..], b""]);
        assert_eq!(column.bools, [false, true]);
        assert_eq!(column.missing, [1]);
    }

    #[test]
    fn unpacked_floats_unknown_fields_and_repeated_kinds_read_as_protobuf_says() {
        // DenseRow { values: 1.5 (unpacked, fixed32), 2.0 }, then field 7
        // (unknown varint), which is skipped.
        let mut row = vec![0x0d];
        row.extend(1.5f32.to_le_bytes());
        row.push(0x0d);
        row.extend(2.0f32.to_le_bytes());
        row.extend([0x38, 0x01]);
        let mut values = Vec::new();
        dense_values(&row, &mut values).unwrap();
        assert_eq!(values, [1.5, 2.0]);

        // A Column whose numbers come one by one, then as a packed run;
        // bools and missing rows one by one.
        let mut column = vec![0x11];
        column.extend(1.5f64.to_le_bytes());
        column.extend([0x12, 0x08]);
        column.extend(2.5f64.to_le_bytes());
        column.extend([0x20, 0x01, 0x28, 0x03]);
        let read = read_column(&column).unwrap();
        assert_eq!(read.numbers, Numbers::Listed(vec![1.5, 2.5]));
        assert_eq!(read.bools, [true]);
        assert_eq!(read.missing, [3]);

        // A Value with a number, then a string: the last kind set wins.
        let mut value = vec![0x09];
        value.extend(4.0f64.to_le_bytes());
        value.extend([0x12, 0x01, b'q']);
        assert_eq!(read_value(&value).unwrap(), WireValue::Text(b"q"));
    }

    #[test]
    fn truncated_or_invalid_bytes_are_malformed() {
        let good = pb::DenseRow {
            values: vec![1.0, 2.0],
        }
        .encode_to_vec();
        for cut in 1..good.len() {
            assert_eq!(
                dense_values(&good[..cut], &mut Vec::new()),
                Err(Malformed),
                "cut at {cut}"
            );
        }
        // Packed floats of 5 bytes; a group; a varint of 11 bytes; tag 0.
        for bad in [
            &[0x0a, 0x05, 0, 0, 0, 0, 0][..],
            &[0x0b],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            &[0x00, 0x00],
        ] {
            assert_eq!(dense_values(bad, &mut Vec::new()), Err(Malformed), "{bad:?}");
        }
        let record = pb::Record {
            fields: [("x".to_string(), value(pb::value::Kind::NumberValue(1.0)))]
                .into_iter()
                .collect(),
        }
        .encode_to_vec();
        for cut in 1..record.len() {
            assert_eq!(
                record_fields(&record[..cut], |_, _| {}),
                Err(Malformed),
                "cut at {cut}"
            );
        }
        let column = pb::Column {
            name: "c".into(),
            numbers: vec![1.0],
            ..Default::default()
        }
        .encode_to_vec();
        // Cut anywhere but after the name (a valid column of no values).
        for cut in (1..column.len()).filter(|&cut| cut != 3) {
            assert_eq!(read_column(&column[..cut]), Err(Malformed), "cut at {cut}");
        }
        // Packed doubles of 7 bytes.
        assert_eq!(read_column(&[0x12, 0x07, 0, 0, 0, 0, 0, 0, 0]), Err(Malformed));
    }

    #[test]
    fn written_messages_are_what_the_public_messages_decode() {
        let mut writer = MessageWriter::with_capacity(4, 1);
        writer.bytes_field(column_field::NAME, "prix €".as_bytes());
        writer.packed(column_field::NUMBERS, 16);
        writer.f64(2.5);
        writer.f64(f64::NAN);
        writer.packed(column_field::MISSING, varint_len(1) + varint_len(300));
        writer.varint(1);
        writer.varint(300);
        writer.end_message();
        writer.bytes_field(column_field::NAME, b"colour");
        writer.bytes_field(column_field::STRINGS, b"red");
        writer.bytes_field(column_field::STRINGS, b"");
        writer.end_message();
        writer.bytes_field(column_field::NAME, b"member");
        writer.packed(column_field::BOOLS, 2);
        writer.raw(&[1, 0]);
        writer.end_message();
        writer.packed(DENSE_ROW_VALUES, 8);
        writer.f32(1.5);
        writer.f32(-2.0);
        writer.end_message();
        let messages = writer.finish();
        assert_eq!(messages.len(), 4);
        let numbers = pb::Column::decode(messages[0].clone()).unwrap();
        assert_eq!(numbers.name, "prix €");
        assert_eq!(numbers.numbers[0], 2.5);
        assert!(numbers.numbers[1].is_nan());
        assert_eq!(numbers.missing, [1, 300]);
        let texts = pb::Column::decode(messages[1].clone()).unwrap();
        assert_eq!(texts.strings, ["red", ""]);
        assert!(texts.numbers.is_empty());
        assert_eq!(
            pb::Column::decode(messages[2].clone()).unwrap().bools,
            [true, false]
        );
        assert_eq!(
            pb::DenseRow::decode(messages[3].clone()).unwrap().values,
            [1.5, -2.0]
        );
        for (value, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(value), len, "{value}");
        }
    }
}
