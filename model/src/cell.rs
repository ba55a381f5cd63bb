//! [`Cell`]: one value of a record to encode, as the caller sent it. The
//! server converts its protocol's values to cells at its edge; the encoder
//! reads only cells.

/// One value of a record: a number, text (as in a CSV cell), a boolean, or
/// nothing (a null, or a blank).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Number(f64),
    Text(&'a str),
    Bool(bool),
    Missing,
}
