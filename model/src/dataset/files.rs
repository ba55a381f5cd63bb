//! Training data in one or several files of one format (an upload, or the
//! objects of a server-side source), read as one table: CSV files must
//! share their header, Parquet and Arrow files their schema, and the rows
//! follow each other in the order given.

use std::sync::Arc;

use arrow_array::RecordBatch;
use sha2::{Digest, Sha256};

use super::chunks::{FileData, SharedFile};
use super::columnar::{DataFormat, ingest_batches};
use super::ingest::{IngestOptions, Rows, TrainingTable, ingest_csv, ingest_csv_rows, invalid};
use crate::error::ModelError;

/// One file of training data.
#[derive(Debug, Clone, Copy)]
pub struct DataFile<'a> {
    /// How errors name it (an object's URL, or "the upload").
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// Reads `files` (at least one) as one table.
pub fn ingest_files(
    format: DataFormat,
    files: &[DataFile<'_>],
    options: &IngestOptions<'_>,
) -> Result<TrainingTable, ModelError> {
    let [first, rest @ ..] = files else {
        return Err(invalid("no training data"));
    };
    match format {
        DataFormat::Csv if rest.is_empty() => ingest_csv(first.bytes, options),
        DataFormat::Csv => {
            let (joined, starts) = joined_csv(files, options.delimiter)?;
            // A line of the joined CSV named by its file and line there.
            let place = |_row: u64, line: u64| {
                let at = starts.partition_point(|start| start.joined_line <= line).max(1) - 1;
                let start = &starts[at];
                format!(
                    "{}: line {}",
                    files[at].name,
                    line - start.joined_line + start.file_line
                )
            };
            let mut table = ingest_csv_rows(&joined, options, Rows::Whole, &place)?;
            table.sha256 = fingerprint(files);
            Ok(table)
        }
        DataFormat::Parquet | DataFormat::Arrow => {
            let mut readers = Vec::with_capacity(files.len());
            for file in files {
                readers.push(batches_of(format, file)?);
            }
            let schema = readers[0].0.clone();
            for (file, (other, _)) in files.iter().zip(&readers).skip(1) {
                if other.fields() != schema.fields() {
                    return Err(invalid(format!(
                        "{}: its schema differs from that of {}: every file of a source must have the same \
                         columns and types",
                        file.name, first.name
                    )));
                }
            }
            let batches = readers.into_iter().flat_map(|(_, batches)| batches);
            ingest_batches(&schema, batches, fingerprint(files), format.name(), options)
        }
    }
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ModelError>>>;

/// Rows decoded at a time.
const BATCH_ROWS: usize = 8192;

/// A file's schema and its batches.
fn batches_of(
    format: DataFormat,
    file: &DataFile<'_>,
) -> Result<(Arc<arrow_schema::Schema>, Batches), ModelError> {
    shared_batches(
        format,
        &SharedFile::in_memory(file.name, bytes::Bytes::copy_from_slice(file.bytes)),
    )
}

/// A shared file's schema and its batches, decoded from its bytes without
/// copying them.
pub(super) fn shared_batches(
    format: DataFormat,
    file: &SharedFile,
) -> Result<(Arc<arrow_schema::Schema>, Batches), ModelError> {
    let name = file.name.clone();
    let corrupt = move |e: &dyn std::fmt::Display| {
        invalid(format!("{name}: the {} file cannot be read: {e}", format.name()))
    };
    match (format, &file.data) {
        (DataFormat::Parquet, data) => {
            let reader = match data {
                FileData::Memory(bytes) => parquet_reader(
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone()),
                ),
                FileData::Disk(path) => parquet_reader(
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                        std::fs::File::open(path).map_err(|e| corrupt(&e))?,
                    ),
                ),
            };
            let (schema, reader) = reader.map_err(|e| corrupt(&e))?;
            Ok((schema, Box::new(reader.map(move |b| b.map_err(|e| corrupt(&e))))))
        }
        (_, FileData::Memory(bytes)) => arrow_batches(
            std::io::Cursor::new(bytes.clone()),
            bytes.starts_with(b"ARROW1"),
            corrupt,
        ),
        (_, FileData::Disk(path)) => {
            let opened = std::fs::File::open(path).map_err(|e| corrupt(&e))?;
            let is_file = file.head(6).map_err(|e| corrupt(&e))? == b"ARROW1";
            arrow_batches(
                std::io::BufReader::with_capacity(1 << 20, opened),
                is_file,
                corrupt,
            )
        }
    }
}

/// A Parquet reader of [`BATCH_ROWS`] rows a batch, and its schema.
fn parquet_reader<T: parquet::file::reader::ChunkReader + 'static>(
    builder: Result<
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<T>,
        parquet::errors::ParquetError,
    >,
) -> Result<
    (
        Arc<arrow_schema::Schema>,
        parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    ),
    parquet::errors::ParquetError,
> {
    let builder = builder?;
    let schema = builder.schema().clone();
    Ok((schema, builder.with_batch_size(BATCH_ROWS).build()?))
}

/// The batches of an Arrow IPC file (`is_file`) or stream.
fn arrow_batches<R: std::io::Read + std::io::Seek + 'static>(
    reader: R,
    is_file: bool,
    corrupt: impl Fn(&dyn std::fmt::Display) -> ModelError + Clone + 'static,
) -> Result<(Arc<arrow_schema::Schema>, Batches), ModelError> {
    if is_file {
        let reader = arrow_ipc::reader::FileReader::try_new(reader, None).map_err(|e| corrupt(&e))?;
        Ok((
            reader.schema(),
            Box::new(reader.map(move |b| b.map_err(|e| corrupt(&e)))),
        ))
    } else {
        let reader = arrow_ipc::reader::StreamReader::try_new(reader, None).map_err(|e| corrupt(&e))?;
        Ok((
            reader.schema(),
            Box::new(reader.map(move |b| b.map_err(|e| corrupt(&e)))),
        ))
    }
}

/// The data's fingerprint: SHA-256 over every file's bytes, in order (as
/// a streamed training computes it, and for one file its own digest).
fn fingerprint(files: &[DataFile<'_>]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.bytes);
    }
    hex::encode(hasher.finalize())
}

/// Where a file's rows begin in the joined CSV.
struct FileStart {
    /// The joined CSV's line the file's first row after its header is on.
    joined_line: u64,
    /// That row's line in the file.
    file_line: u64,
}

fn lines_in(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// CSV files with one header as one CSV: the first file whole, then each
/// other's rows after its header, which must be the first's; and where
/// each file's rows begin in it.
fn joined_csv(files: &[DataFile<'_>], delimiter: u8) -> Result<(Vec<u8>, Vec<FileStart>), ModelError> {
    let header_of = |file: &DataFile<'_>| -> Result<(csv::ByteRecord, usize), ModelError> {
        let bytes = file.bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(file.bytes);
        let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).from_reader(bytes);
        let header = reader
            .byte_headers()
            .map_err(|e| invalid(format!("{}: malformed CSV header: {e}", file.name)))?
            .clone();
        let skipped = file.bytes.len() - bytes.len();
        Ok((header, skipped + reader.position().byte() as usize))
    };
    let (header, _) = header_of(&files[0])?;
    let mut joined = files[0].bytes.to_vec();
    let mut starts = vec![FileStart {
        joined_line: 1,
        file_line: 1,
    }];
    for file in &files[1..] {
        let (other, end) = header_of(file)?;
        if other != header {
            return Err(invalid(format!(
                "{}: its header differs from that of {}: every file of a source must have the same columns",
                file.name, files[0].name
            )));
        }
        if !joined.is_empty() && !joined.ends_with(b"\n") {
            joined.push(b'\n');
        }
        starts.push(FileStart {
            joined_line: lines_in(&joined) + 1,
            file_line: lines_in(&file.bytes[..end]) + 1,
        });
        joined.extend_from_slice(&file.bytes[end..]);
    }
    Ok((joined, starts))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn options<'a>(types: &'a HashMap<String, super::super::ColumnKind>) -> IngestOptions<'a> {
        IngestOptions {
            delimiter: b',',
            label_column: "y",
            positive_label: "1",
            drop_columns: &[],
            column_types: types,
            max_rows: 1000,
            max_columns: 100,
        }
    }

    #[test]
    fn csv_files_with_one_header_read_as_one_table() {
        let types = HashMap::new();
        let files = [
            DataFile {
                name: "a",
                bytes: b"x,y\n1,1\n2,0",
            },
            DataFile {
                name: "b",
                bytes: b"x,y\r\n3,1\r\n4,0\r\n",
            },
        ];
        let table = ingest_files(DataFormat::Csv, &files, &options(&types)).unwrap();
        assert_eq!(table.labels, [1.0, 0.0, 1.0, 0.0]);
        let other = [
            files[0],
            DataFile {
                name: "c",
                bytes: b"y,x\n1,1\n",
            },
        ];
        let error = ingest_files(DataFormat::Csv, &other, &options(&types))
            .unwrap_err()
            .to_string();
        assert!(error.contains("c: its header differs from that of a"), "{error}");
        assert!(ingest_files(DataFormat::Csv, &[], &options(&types)).is_err());
    }
}
