//! Property tests of the CSV ingest and the record encoder: no input makes
//! them panic, a rejected upload is INVALID_ARGUMENT with a message, and a
//! CSV row encodes exactly like the same row sent as a Predict record.
//!
//! Every property runs a bounded number of cases so the file stays quick in
//! CI; the cargo-fuzz targets under `fuzz/` drive the same entry points with
//! coverage guidance for longer runs on a nightly toolchain.

use std::collections::HashMap;

use proptest::prelude::*;
use serval_model::dataset::{
    ColumnKind, ColumnValues, IngestOptions, NumericCell, TrainingTable, boolean_token, ingest_csv,
    parse_number,
};
use serval_model::encoder::{Encoder, EncoderState, Transform};
use serval_model::{Cell, ModelError};

/// A record value as a caller sends it, owned.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Text(String),
    Bool(bool),
    Missing,
}

impl Value {
    fn cell(&self) -> Cell<'_> {
        match self {
            Value::Number(x) => Cell::Number(*x),
            Value::Text(s) => Cell::Text(s),
            Value::Bool(b) => Cell::Bool(*b),
            Value::Missing => Cell::Missing,
        }
    }
}

type Record = HashMap<String, Value>;

/// Encodes a record by column name, as a server does: a column the record
/// lacks is an error naming it.
fn encode_record(encoder: &Encoder, record: &Record, out: &mut Vec<f32>) -> Result<(), ModelError> {
    let cells = encoder
        .column_names()
        .map(|name| {
            record
                .get(name)
                .map(Value::cell)
                .ok_or_else(|| ModelError::MissingColumn {
                    record: 0,
                    column: name.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    encoder.encode_cells(0, &cells, out)
}

const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// A bounded run that leaves no regression files behind.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn delimiter() -> impl Strategy<Value = u8> {
    prop::sample::select(&DELIMITERS[..])
}

// ---------------------------------------------------------------------------
// Ingest of arbitrary and CSV-shaped bytes.

/// Pieces CSV-shaped inputs are glued from, some of them not UTF-8.
const TOKENS: &[&[u8]] = &[
    b",",
    b";",
    b"\t",
    b"|",
    b"\"",
    b"\"\"",
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b"0",
    b"1",
    b"7",
    b"-",
    b".",
    b"e",
    b"1.5",
    b"-3",
    b"1e300",
    b"-1e308",
    b"NaN",
    b"inf",
    b"a",
    b"b",
    b"y",
    b"yes",
    b"no",
    b"TRUE",
    b"FALSE",
    b"red",
    "\u{e9}".as_bytes(),
    "\u{65e5}\u{672c}".as_bytes(),
    b"\xEF\xBB\xBF",
    b"\xFF",
    b"\x80",
    b"\xC3",
    b"\0",
];

/// Unquoted cell text for row-shaped inputs (no delimiters, quotes or line
/// breaks): blanks, numbers, boolean tokens and words.
const CELL_TOKENS: &[&[u8]] = &[
    b"",
    b" ",
    b"0",
    b"1",
    b"2.5",
    b"-4",
    b"1e300",
    b"NaN",
    b"inf",
    b"a",
    b"yes",
    b"no",
    b"TRUE",
    b"FALSE",
    b"red",
    "\u{e9}".as_bytes(),
];

const LINE_ENDS: &[&[u8]] = &[b"\n", b"\r\n", b"\r"];

/// Header names besides the label "y": some odd, duplicated or blank.
const ODD_NAMES: &[&str] = &["", " y ", "a", "\u{e9}", "\"q\"", "y"];

/// Label cells: the option strategy's positive labels and others.
const LABEL_CELLS: &[&[u8]] = &[b"yes", b"no", b"1", b"0", b"TRUE", b"FALSE", b"a", b" no ", b""];

fn tokens(alphabet: &'static [&'static [u8]], max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(alphabet), 0..max).prop_map(|parts| parts.concat())
}

/// A cell of a row-shaped input; now and then one that is not UTF-8.
fn cell() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        100 => tokens(CELL_TOKENS, 3),
        // Quoted, with the delimiters, quotes and line breaks that needs.
        10 => tokens(TOKENS, 4).prop_map(|text| {
            let mut quoted = vec![b'"'];
            for byte in String::from_utf8_lossy(&text).bytes() {
                if byte == b'"' {
                    quoted.push(b'"');
                }
                quoted.push(byte);
            }
            quoted.push(b'"');
            quoted
        }),
        1 => tokens(TOKENS, 3),
    ]
    .boxed()
}

/// Mostly a valid header: some of a, b, c and usually the label y.
fn header() -> impl Strategy<Value = Vec<String>> {
    (
        prop::sample::subsequence(vec!["a", "b", "c"], 1..=3).prop_shuffle(),
        prop::bool::weighted(0.9),
        0usize..=3,
        prop::option::weighted(0.15, prop::sample::select(ODD_NAMES)),
    )
        .prop_map(|(names, label, at, odd)| {
            let mut names: Vec<String> = names.into_iter().map(String::from).collect();
            if label {
                names.insert(at.min(names.len()), "y".to_string());
            }
            names.extend(odd.map(String::from));
            names
        })
}

/// A header row (or none), then rows of cells, mostly as many as the
/// header has and with label-like cells under "y", so that a fair share of
/// inputs parse.
fn row_shaped(delimiter: u8) -> impl Strategy<Value = Vec<u8>> {
    prop::option::weighted(0.95, header()).prop_flat_map(move |header| {
        let cells: Vec<BoxedStrategy<Vec<u8>>> = match &header {
            Some(names) => names
                .iter()
                .map(|name| {
                    if name.trim() == "y" {
                        prop_oneof![
                            9 => prop::sample::select(LABEL_CELLS).prop_map(<[u8]>::to_vec),
                            1 => cell(),
                        ]
                        .boxed()
                    } else {
                        cell()
                    }
                })
                .collect(),
            None => vec![cell(); 2],
        };
        // Mostly the header's width, sometimes a cell short or over.
        let row = (cells, prop_oneof![40 => Just(0i32), 1 => -2i32..=2]).prop_map(|(mut cells, shape)| {
            if shape < 0 {
                cells.truncate(cells.len().saturating_sub(shape.unsigned_abs() as usize));
            }
            for _ in 0..shape.max(0) {
                cells.push(b"x".to_vec());
            }
            cells
        });
        let line_end = prop::sample::select(LINE_ENDS);
        let header = header.clone();
        prop::collection::vec((row, line_end), 0..12).prop_map(move |rows| {
            let mut out = Vec::new();
            if let Some(names) = &header {
                out.extend_from_slice(names.join(&(delimiter as char).to_string()).as_bytes());
                out.push(b'\n');
            }
            for (cells, end) in rows {
                out.extend_from_slice(&cells.join(&delimiter));
                out.extend_from_slice(end);
            }
            out
        })
    })
}

/// Ingest options with owned storage for the borrowed fields.
#[derive(Debug, Clone)]
struct Options {
    delimiter: u8,
    positive_label: &'static str,
    drop_columns: Vec<String>,
    column_types: HashMap<String, ColumnKind>,
    max_rows: usize,
}

impl Options {
    fn get(&self) -> IngestOptions<'_> {
        IngestOptions {
            delimiter: self.delimiter,
            label_column: "y",
            positive_label: self.positive_label,
            drop_columns: &self.drop_columns,
            column_types: &self.column_types,
            max_rows: self.max_rows,
            max_columns: 1000,
        }
    }
}

fn column_kind() -> impl Strategy<Value = ColumnKind> {
    prop::sample::select(&[ColumnKind::Numeric, ColumnKind::Categorical, ColumnKind::Boolean][..])
}

fn options(delimiter: u8) -> impl Strategy<Value = Options> {
    let names = || prop::sample::select(&["a", "b", "c", "y", "zz"][..]).prop_map(String::from);
    (
        prop::sample::select(&["yes", "1", "TRUE", " no ", "a"][..]),
        prop_oneof![
            6 => Just(Vec::new()),
            1 => prop::collection::vec(names(), 1..3),
        ],
        prop_oneof![
            6 => Just(HashMap::new()),
            1 => prop::collection::hash_map(names(), column_kind(), 1..3),
        ],
        prop_oneof![1 => 1..4usize, 4 => 4..64usize],
    )
        .prop_map(
            move |(positive_label, drop_columns, column_types, max_rows)| Options {
                delimiter,
                positive_label,
                drop_columns,
                column_types,
                max_rows,
            },
        )
}

/// Ingest returns a consistent table or INVALID_ARGUMENT with a message.
fn check_ingest(bytes: &[u8], options: &Options) -> Result<(), TestCaseError> {
    match ingest_csv(bytes, &options.get()) {
        Ok(table) => check_table(&table, options),
        Err(ModelError::InvalidData(message)) => {
            prop_assert!(!message.trim().is_empty(), "empty INVALID_ARGUMENT message");
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "expected INVALID_ARGUMENT, got {other:?}"
        ))),
    }
}

/// What an accepted table promises, and that it can be fitted and encoded.
/// The encoding is not checked for finiteness here: inputs hold numbers
/// like 1e300, which hit the known overflow pinned by the ignored tests at
/// the end of this file.
fn check_table(table: &TrainingTable, options: &Options) -> Result<(), TestCaseError> {
    let rows = table.labels.len();
    prop_assert!(table.rows_read <= options.max_rows);
    prop_assert_eq!(rows + table.skipped_rows, table.rows_read);
    prop_assert!(table.labels.contains(&1.0) && table.labels.contains(&0.0));
    prop_assert!(table.labels.iter().all(|&l| l == 1.0 || l == 0.0));
    prop_assert!(!table.features.is_empty());
    prop_assert!(table.features.len() < table.header_columns);
    for column in &table.features {
        prop_assert_ne!(column.name.as_str(), "y");
        prop_assert!(!options.drop_columns.contains(&column.name));
        if let Some(&kind) = options.column_types.get(&column.name) {
            prop_assert_eq!(column.kind, kind);
        }
        match &column.values {
            ColumnValues::Numeric(values) => {
                prop_assert_eq!(column.kind, ColumnKind::Numeric);
                prop_assert_eq!(values.len(), rows);
                prop_assert!(values.iter().all(|x| x.is_finite() || x.is_nan()));
            }
            ColumnValues::Categorical { ids, dictionary } => {
                prop_assert_eq!(column.kind, ColumnKind::Categorical);
                prop_assert_eq!(ids.len(), rows);
                prop_assert!(ids.iter().all(|&id| (id as usize) < dictionary.len()));
            }
            ColumnValues::Boolean { values, .. } => {
                prop_assert_eq!(column.kind, ColumnKind::Boolean);
                prop_assert_eq!(values.len(), rows);
                prop_assert!(values.iter().all(|&x| x == 1.0 || x == 0.0 || x.is_nan()));
            }
        }
    }
    let all: Vec<usize> = (0..rows).collect();
    let encoder = Encoder::new(EncoderState::fit(table, &all));
    let dense = encoder.encode_table(table, &all);
    prop_assert_eq!(dense.len(), rows * encoder.width());
    Ok(())
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn ingest_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        options in delimiter().prop_flat_map(options),
    ) {
        check_ingest(&bytes, &options)?;
    }

    #[test]
    fn ingest_never_panics_on_csv_shaped_text(
        (bytes, options) in delimiter().prop_flat_map(|d| {
            (prop_oneof![1 => tokens(TOKENS, 80), 3 => row_shaped(d)], options(d))
        }),
    ) {
        check_ingest(&bytes, &options)?;
    }
}

// ---------------------------------------------------------------------------
// Valid tables: the table encoding matches the record encoding.

/// Categorical cells: no numbers, so the column never turns numeric.
const CATEGORIES: &[&str] = &[
    "red",
    "Red",
    " green ",
    "blue",
    "",
    "  ",
    "a,b",
    "say \"hi\"",
    "two\nlines",
    "tab\there",
    "pipe|semi;",
    "na\u{ef}ve",
    "\u{65e5}\u{672c}",
    "yes",
    "Y",
    "N/A",
];

fn numeric_cell() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        1 => Just("  ".to_string()),
        4 => (-1e6f64..1e6).prop_map(|x| x.to_string()),
        3 => (-1000i64..1000).prop_map(|i| i.to_string()),
        1 => (0f64..1e4).prop_map(|x| format!("{x:e}")),
        1 => (-50i32..50).prop_map(|i| format!(" {i} ")),
        1 => (0f64..100.0).prop_map(|x| format!("+{x}")),
        // Long-tailed values, for the log1p transform.
        2 => (0f64..25.0).prop_map(|e| format!("{:.3}", e.exp())),
    ]
}

fn categorical_cell() -> impl Strategy<Value = String> {
    prop::sample::select(CATEGORIES).prop_map(String::from)
}

/// Boolean cells, spelled one way per column, with blanks and padding.
fn boolean_cells(rows: usize) -> impl Strategy<Value = Vec<String>> {
    const SPELLINGS: &[(&str, &str)] = &[
        ("TRUE", "FALSE"),
        ("yes", "no"),
        ("1", "0"),
        ("T", "F"),
        ("Y", "n"),
        ("true", "FALSE"),
    ];
    prop::sample::select(SPELLINGS).prop_flat_map(move |(yes, no)| {
        let cell = prop_oneof![
            4 => Just(yes.to_string()),
            4 => Just(no.to_string()),
            1 => Just(String::new()),
            1 => Just(format!(" {yes}")),
            1 => Just(format!("{no} ")),
        ];
        prop::collection::vec(cell, rows)
    })
}

/// A valid labelled table, columns in random order.
#[derive(Debug, Clone)]
struct TableSpec {
    delimiter: u8,
    crlf: bool,
    /// (name, cells), the label column "label" among them.
    columns: Vec<(String, Vec<String>)>,
    /// Fit on every kept row, or on those whose flag is set.
    fit_on: Option<Vec<bool>>,
}

impl TableSpec {
    fn rows(&self) -> usize {
        self.columns[0].1.len()
    }

    fn csv(&self) -> Vec<u8> {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .terminator(if self.crlf {
                csv::Terminator::CRLF
            } else {
                csv::Terminator::Any(b'\n')
            })
            .from_writer(Vec::new());
        writer
            .write_record(self.columns.iter().map(|(name, _)| name))
            .unwrap();
        for row in 0..self.rows() {
            writer
                .write_record(self.columns.iter().map(|(_, cells)| &cells[row]))
                .unwrap();
        }
        writer.into_inner().unwrap()
    }

    fn label(&self, row: usize) -> &str {
        let (_, cells) = self.columns.iter().find(|(name, _)| name == "label").unwrap();
        &cells[row]
    }

    /// The rows ingest keeps (label not blank), in order.
    fn kept_rows(&self) -> Vec<usize> {
        (0..self.rows())
            .filter(|&r| !self.label(r).trim().is_empty())
            .collect()
    }

    /// Row `row` as a Predict record of text values, as the CSV spells it.
    fn record(&self, row: usize) -> Record {
        self.columns
            .iter()
            .map(|(name, cells)| (name.clone(), Value::Text(cells[row].clone())))
            .collect()
    }

    /// The same row with typed values where the fitted column allows:
    /// numbers, bools, and nulls for blanks; categorical cells stay text.
    fn typed_record(&self, row: usize, encoder: &Encoder) -> Record {
        let mut fields = self.record(row);
        for column in &encoder.state().columns {
            let (_, cells) = self
                .columns
                .iter()
                .find(|(name, _)| *name == column.name)
                .unwrap();
            let text = cells[row].trim();
            let value = match &column.transform {
                Transform::Categorical { .. } => continue,
                _ if text.is_empty() => Value::Missing,
                Transform::Numeric { .. } | Transform::Quantile { .. } => match parse_number(text) {
                    NumericCell::Value(x) => Value::Number(x),
                    other => panic!("numeric column {:?} holds {text:?} ({other:?})", column.name),
                },
                Transform::Boolean { .. } => Value::Bool(boolean_token(text).unwrap()),
            };
            fields.insert(column.name.clone(), value);
        }
        fields
    }

    fn ingest(&self) -> Result<TrainingTable, ModelError> {
        ingest_csv(
            &self.csv(),
            &IngestOptions {
                delimiter: self.delimiter,
                label_column: "label",
                positive_label: "yes",
                drop_columns: &[],
                column_types: &HashMap::new(),
                max_rows: 10_000,
                max_columns: 1000,
            },
        )
    }

    /// Ingests the table and fits an encoder on the chosen rows.
    fn fit(&self) -> (TrainingTable, Encoder) {
        let table = self.ingest().expect("a generated table ingests");
        let train: Vec<usize> = match &self.fit_on {
            None => (0..table.labels.len()).collect(),
            Some(flags) => self
                .kept_rows()
                .iter()
                .enumerate()
                .filter(|&(_, &row)| flags[row])
                .map(|(kept, _)| kept)
                .collect(),
        };
        let encoder = Encoder::new(EncoderState::fit(&table, &train));
        (table, encoder)
    }
}

fn column(
    name: String,
    cell: BoxedStrategy<String>,
    rows: usize,
) -> impl Strategy<Value = (String, Vec<String>)> {
    (Just(name), prop::collection::vec(cell, rows))
}

fn table_spec() -> impl Strategy<Value = TableSpec> {
    (2usize..120, 1usize..=3, 0usize..=2, 0usize..=2)
        .prop_flat_map(|(rows, numeric, categorical, boolean)| {
            let label = prop::collection::vec(
                prop::sample::select(&["yes", "no", "yes", "no", " no", ""][..]).prop_map(String::from),
                rows,
            )
            .prop_map(|mut cells| {
                cells[0] = "yes".to_string();
                cells[1] = "no".to_string();
                ("label".to_string(), cells)
            });
            let mut columns = vec![label.boxed()];
            for i in 0..numeric {
                columns.push(column(format!("n{i}"), numeric_cell().boxed(), rows).boxed());
            }
            for i in 0..categorical {
                columns.push(column(format!("c{i}"), categorical_cell().boxed(), rows).boxed());
            }
            for i in 0..boolean {
                columns.push((Just(format!("b{i}")), boolean_cells(rows)).boxed());
            }
            (
                delimiter(),
                any::<bool>(),
                columns.prop_shuffle(),
                prop::option::of(prop::collection::vec(any::<bool>(), rows)),
            )
        })
        .prop_map(|(delimiter, crlf, columns, fit_on)| TableSpec {
            delimiter,
            crlf,
            columns,
            fit_on,
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn table_and_record_encodings_agree(spec in table_spec()) {
        let (table, encoder) = spec.fit();
        let kept = spec.kept_rows();
        prop_assert_eq!(kept.len(), table.labels.len());
        let all: Vec<usize> = (0..kept.len()).collect();
        let dense = encoder.encode_table(&table, &all);
        prop_assert_eq!(dense.len(), kept.len() * encoder.width());
        prop_assert!(dense.iter().all(|x| x.is_finite()), "non-finite table encoding");

        let mut text = Vec::with_capacity(dense.len());
        let mut typed = Vec::with_capacity(dense.len());
        for &row in &kept {
            let result = encode_record(&encoder, &spec.record(row), &mut text);
            prop_assert!(result.is_ok(), "row {} as text: {:?}", row, result);
            let result = encode_record(&encoder, &spec.typed_record(row, &encoder), &mut typed);
            prop_assert!(result.is_ok(), "row {} typed: {:?}", row, result);
        }
        for (how, records) in [("text", &text), ("typed", &typed)] {
            prop_assert_eq!(records.len(), dense.len());
            for (i, (a, b)) in dense.iter().zip(records).enumerate() {
                let (row, column) = (i / encoder.width(), i % encoder.width());
                prop_assert!(
                    a.to_bits() == b.to_bits() || (a - b).abs() <= 1e-6,
                    "row {}, value {}: table {} vs {} record {}",
                    kept[row],
                    column,
                    a,
                    how,
                    b
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Arbitrary records and dense rows against a fitted encoder.

/// Every column name a generated table can have.
const TABLE_NAMES: &[&str] = &["label", "n0", "n1", "n2", "c0", "c1", "b0", "b1"];

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(
            &[
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MAX,
                f64::MIN,
                f64::MIN_POSITIVE,
                5e-324,
                -0.0,
                0.0,
                1.0,
                1e300,
                -1e39,
                1e15,
                0.5,
            ][..]
        ),
        -1e6f64..1e6,
        any::<f64>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        categorical_cell(),
        numeric_cell(),
        prop::sample::select(
            &[
                "1e308", "-1e308", "1e39", "1e-320", "NaN", "inf", "-inf", "TRUE", "false", "t", "0", "1",
                "",
            ][..]
        )
        .prop_map(String::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        number().prop_map(Value::Number),
        text().prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Missing),
    ]
}

/// A record: most real columns set, plus some unknown names.
fn fields() -> impl Strategy<Value = Record> {
    let known = TABLE_NAMES
        .iter()
        .map(|&name| {
            prop::option::weighted(0.95, value()).prop_map(move |v| v.map(|v| (name.to_string(), v)))
        })
        .collect::<Vec<_>>();
    let unknown = prop::collection::hash_map(
        prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
        value(),
        0..4,
    );
    (known, unknown).prop_map(|(known, mut fields)| {
        fields.extend(known.into_iter().flatten());
        fields
    })
}

fn dense_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -1e3f32..1e3,
        1 => prop::sample::select(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -0.0][..]),
        1 => any::<f32>(),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn encode_record_never_panics(
        spec in table_spec(),
        records in prop::collection::vec(fields(), 1..8),
    ) {
        let (_, encoder) = spec.fit();
        let names: Vec<String> = encoder.state().columns.iter().map(|c| format!("{:?}", c.name)).collect();
        for fields in &records {
            let mut out = vec![42.0f32; 3];
            match encode_record(&encoder, fields, &mut out) {
                Ok(()) => {
                    prop_assert_eq!(&out[..3], &[42.0f32; 3][..]);
                    prop_assert_eq!(out.len(), 3 + encoder.width());
                    prop_assert!(
                        out[3..].iter().all(|x| x.is_finite()),
                        "non-finite encoding {:?} of {:?}",
                        &out[3..],
                        fields
                    );
                }
                Err(error) => {
                    let message = error.to_string();
                    prop_assert!(
                        names.iter().any(|name| message.contains(name.as_str())),
                        "message {:?} names no column of {:?}",
                        message,
                        names
                    );
                }
            }
        }
    }

    #[test]
    fn check_dense_accepts_exactly_finite_rows_of_the_width(
        spec in table_spec(),
        offsets in prop::collection::vec(prop_oneof![3 => -1i64..=1, 1 => -64i64..64], 1..6),
        values in prop::collection::vec(dense_value(), 0..64),
    ) {
        let (_, encoder) = spec.fit();
        let width = encoder.width();
        for offset in offsets {
            let len = (width as i64 + offset).max(0) as usize;
            let row: Vec<f32> = (0..len).map(|i| values.get(i).copied().unwrap_or(0.5)).collect();
            let expected = len == width && row.iter().all(|x| x.is_finite());
            let result = encoder.check_dense(0, &row);
            prop_assert_eq!(result.is_ok(), expected, "{:?} for {:?}", result, row);
            if let Err(error) = result {
                prop_assert!(error.to_string().starts_with("dense_rows[0]: "), "{}", error);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Known issues found by the properties above, pinned as examples. Each is
// ignored until the encoder is fixed; run them with `-- --ignored`.

fn ingest_text(csv: &str) -> TrainingTable {
    ingest_csv(
        csv.as_bytes(),
        &IngestOptions {
            delimiter: b',',
            label_column: "y",
            positive_label: "yes",
            drop_columns: &[],
            column_types: &HashMap::new(),
            max_rows: 100,
            max_columns: 1000,
        },
    )
    .expect("the example ingests")
}

/// A Predict record with a finite number far outside the training range
/// must be rejected with the column's name or encode to finite values.
#[test]
fn huge_record_numbers_are_rejected_or_finite() {
    let table = ingest_text("x,y\n1,yes\n2,no\n3,no\n");
    let encoder = Encoder::new(EncoderState::fit(&table, &[0, 1, 2]));
    for value in [
        Value::Number(1e300),
        Value::Number(-1e39),
        Value::Text("1e300".to_string()),
    ] {
        let fields = HashMap::from([("x".to_string(), value.clone())]);
        let mut out = Vec::new();
        match encode_record(&encoder, &fields, &mut out) {
            Ok(()) => assert!(out.iter().all(|x| x.is_finite()), "{value:?} encodes to {out:?}"),
            Err(error) => assert!(error.to_string().contains("\"x\""), "{error}"),
        }
    }
}

/// Training values whose squares (or sums) overflow f64 must still give a
/// finite, storable encoder that encodes the table to finite values.
#[test]
fn huge_training_values_fit_a_finite_storable_encoder() {
    for csv in [
        "x,y\n1e200,yes\n-1e200,no\n1,no\n",
        "x,y\n1e308,yes\n1e308,no\n1,no\n",
    ] {
        let table = ingest_text(csv);
        let state = EncoderState::fit(&table, &[0, 1, 2]);
        let json = serde_json::to_value(&state).unwrap();
        let read_back = serde_json::from_value::<EncoderState>(json.clone());
        assert!(
            read_back.is_ok(),
            "{csv:?}: stored {json} does not read back: {read_back:?}"
        );
        let dense = Encoder::new(state).encode_table(&table, &[0, 1, 2]);
        assert!(dense.iter().all(|x| x.is_finite()), "{csv:?}: {dense:?}");
    }
}
