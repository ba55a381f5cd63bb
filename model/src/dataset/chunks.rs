//! Training data read in parts, for training in bounded memory: a census
//! of its rows, and passes that hand over the rows a caller selects as
//! tables of a bounded number of rows. Columns are typed as the options
//! say, so a caller that fixes every column's kind gets the same columns
//! from every part.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use arrow_array::{BooleanArray, RecordBatch};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::columnar::{DataFormat, ingest_batch_rows};
use super::files::shared_batches;
use super::ingest::{IngestOptions, Rows, TrainingTable, csv_error, ingest_csv_rows, invalid};
use crate::error::ModelError;

/// One file of training data, owned rather than borrowed: in memory
/// (shared, so columnar readers decode it without a copy) or in a file on
/// disk, read a part at a time.
#[derive(Debug, Clone)]
pub struct SharedFile {
    /// How errors name it (an object's URL, or "the upload").
    pub name: String,
    pub data: FileData,
}

/// Where a file's bytes are.
#[derive(Debug, Clone)]
pub enum FileData {
    Memory(Bytes),
    Disk(PathBuf),
}

/// Bytes read from disk at a time.
const READ_BUFFER: usize = 1 << 20;

impl SharedFile {
    pub fn in_memory(name: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        SharedFile {
            name: name.into(),
            data: FileData::Memory(bytes.into()),
        }
    }

    pub fn on_disk(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        SharedFile {
            name: name.into(),
            data: FileData::Disk(path.into()),
        }
    }

    /// How an error names line `line` of it.
    pub(crate) fn line(&self, line: u64) -> String {
        format!("{}: line {line}", self.name)
    }

    fn unreadable(&self, error: std::io::Error) -> ModelError {
        ModelError::TemporaryStorage(format!(
            "{}: cannot read the data the server stored: {error}",
            self.name
        ))
    }

    /// Its bytes, in memory: shared when they are already, read when on
    /// disk.
    pub fn load(&self) -> Result<Bytes, ModelError> {
        match &self.data {
            FileData::Memory(bytes) => Ok(bytes.clone()),
            FileData::Disk(path) => std::fs::read(path)
                .map(Bytes::from)
                .map_err(|e| self.unreadable(e)),
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> Result<u64, ModelError> {
        match &self.data {
            FileData::Memory(bytes) => Ok(bytes.len() as u64),
            FileData::Disk(path) => std::fs::metadata(path)
                .map(|m| m.len())
                .map_err(|e| self.unreadable(e)),
        }
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> Result<bool, ModelError> {
        Ok(self.len()? == 0)
    }

    /// A buffered reader of its bytes from the start.
    pub fn reader(&self) -> Result<Box<dyn BufRead + '_>, ModelError> {
        match &self.data {
            FileData::Memory(bytes) => Ok(Box::new(&bytes[..])),
            FileData::Disk(path) => {
                let file = std::fs::File::open(path).map_err(|e| self.unreadable(e))?;
                Ok(Box::new(BufReader::with_capacity(READ_BUFFER, file)))
            }
        }
    }

    /// Its first `n` bytes (fewer when it is shorter).
    pub fn head(&self, n: usize) -> Result<Vec<u8>, ModelError> {
        let mut head = Vec::with_capacity(n);
        self.reader()?
            .take(n as u64)
            .read_to_end(&mut head)
            .map_err(|e| self.unreadable(e))?;
        Ok(head)
    }
}

/// What a first look at the data found.
#[derive(Debug, Clone)]
pub struct Census {
    /// Data rows, labelled or not.
    pub rows: usize,
    /// Columns in the header or schema.
    pub columns: usize,
    /// SHA-256 of every file's bytes in order.
    pub sha256: String,
}

/// The rows and columns of `files`, checking that they share a header or
/// schema. Parquet counts come from the files' metadata; CSV and Arrow
/// files are read through once. `counted` hears the rows counted so far
/// now and then (every row of a CSV, each batch of an Arrow file, each
/// Parquet file), and its error stops the count.
pub fn census(
    format: DataFormat,
    files: &[SharedFile],
    options: &IngestOptions<'_>,
    counted: &mut dyn FnMut(usize) -> Result<(), ModelError>,
) -> Result<Census, ModelError> {
    let [first, ..] = files else {
        return Err(invalid("no training data"));
    };
    let mut hasher = Sha256::new();
    let mut rows = 0usize;
    let columns;
    match format {
        DataFormat::Csv => {
            let header = csv_header(first, options.delimiter)?;
            columns = header.len();
            for file in files {
                hash_into(file, &mut hasher)?;
                let mut reader = csv_reader(file, options.delimiter)?;
                if csv_reader_header(&mut reader, file)? != header {
                    return Err(different_header(file, first));
                }
                let mut record = csv::ByteRecord::new();
                while reader
                    .read_byte_record(&mut record)
                    .map_err(|e| csv_error(e, &|_, line| file.line(line)))?
                {
                    rows += 1;
                    counted(rows)?;
                }
            }
        }
        DataFormat::Parquet | DataFormat::Arrow => {
            let (schema, _) = shared_batches(format, first)?;
            columns = schema.fields().len();
            for file in files {
                hash_into(file, &mut hasher)?;
                let (other, batches) = shared_batches(format, file)?;
                if other.fields() != schema.fields() {
                    return Err(invalid(format!(
                        "{}: its schema differs from that of {}: every file of a source must have the same \
                         columns and types",
                        file.name, first.name
                    )));
                }
                match format {
                    DataFormat::Parquet => rows += parquet_rows(file)?,
                    _ => {
                        for batch in batches {
                            rows += batch?.num_rows();
                            counted(rows)?;
                        }
                    }
                }
                counted(rows)?;
            }
        }
    }
    if rows > options.max_rows {
        return Err(invalid(format!(
            "the {} data has {rows} data rows, more than the server's training row limit of {}",
            format.name(),
            options.max_rows
        )));
    }
    Ok(Census {
        rows,
        columns,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Columns of a file: its CSV header's fields, or its schema's.
pub fn columns_of(format: DataFormat, file: &SharedFile, delimiter: u8) -> Result<usize, ModelError> {
    match format {
        DataFormat::Csv => Ok(csv_header(file, delimiter)?.len()),
        _ => Ok(shared_batches(format, file)?.0.fields().len()),
    }
}

/// Line breaks in a file: about its CSV rows.
pub fn line_breaks(file: &SharedFile) -> Result<u64, ModelError> {
    let mut reader = file.reader()?;
    let mut count = 0u64;
    loop {
        let buffer = reader.fill_buf().map_err(|e| file.unreadable(e))?;
        if buffer.is_empty() {
            return Ok(count);
        }
        count += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
        let used = buffer.len();
        reader.consume(used);
    }
}

/// Adds a file's bytes to a fingerprint.
fn hash_into(file: &SharedFile, hasher: &mut Sha256) -> Result<(), ModelError> {
    match &file.data {
        FileData::Memory(bytes) => hasher.update(bytes),
        FileData::Disk(_) => {
            let mut reader = file.reader()?;
            loop {
                let buffer = reader.fill_buf().map_err(|e| file.unreadable(e))?;
                if buffer.is_empty() {
                    break;
                }
                hasher.update(buffer);
                let used = buffer.len();
                reader.consume(used);
            }
        }
    }
    Ok(())
}

/// Rows of a Parquet file, from its footer.
pub fn parquet_rows(file: &SharedFile) -> Result<usize, ModelError> {
    let corrupt = |e: parquet::errors::ParquetError| {
        invalid(format!("{}: the Parquet file cannot be read: {e}", file.name))
    };
    let rows = match &file.data {
        FileData::Memory(bytes) => {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .map_err(corrupt)?
                .metadata()
                .file_metadata()
                .num_rows()
        }
        FileData::Disk(path) => {
            let opened = std::fs::File::open(path).map_err(|e| file.unreadable(e))?;
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(opened)
                .map_err(corrupt)?
                .metadata()
                .file_metadata()
                .num_rows()
        }
    };
    Ok(rows.max(0) as usize)
}

/// Reads the rows of `files` whose position (0-based, over every data row,
/// labelled or not) `select` accepts, and hands them to `each` as tables of
/// at most `chunk_rows` read rows, in order. Each table is read as a part:
/// it may hold one class only, and has no fingerprint. An error from
/// `select` or `each` stops the reading.
pub fn read_chunks(
    format: DataFormat,
    files: &[SharedFile],
    options: &IngestOptions<'_>,
    chunk_rows: usize,
    select: &mut dyn FnMut(usize) -> Result<bool, ModelError>,
    each: &mut dyn FnMut(TrainingTable) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let [first, ..] = files else {
        return Err(invalid("no training data"));
    };
    let mut position = 0usize;
    match format {
        DataFormat::Csv => {
            let header = csv_header(first, options.delimiter)?;
            let start = || -> Result<csv::Writer<Vec<u8>>, ModelError> {
                let mut writer = csv::WriterBuilder::new()
                    .delimiter(options.delimiter)
                    .from_writer(Vec::new());
                writer
                    .write_byte_record(&header)
                    .map_err(|e| invalid(format!("cannot copy the CSV header: {e}")))?;
                Ok(writer)
            };
            let mut writer = start()?;
            // Each held row's file and line there: errors name the row
            // where it was read, not where it sits in the chunk.
            let mut origins: Vec<(usize, u64)> = Vec::new();
            let mut flush = |writer: csv::Writer<Vec<u8>>, origins: &mut Vec<(usize, u64)>| {
                let bytes = writer
                    .into_inner()
                    .map_err(|e| invalid(format!("cannot copy CSV rows: {e}")))?;
                let place = |row: u64, line: u64| match origins.get(row as usize) {
                    Some(&(file, line)) => files[file].line(line),
                    None => format!("line {line} of a chunk"),
                };
                let table = ingest_csv_rows(&bytes, options, Rows::Part, &place)?;
                origins.clear();
                each(table)
            };
            let mut record = csv::ByteRecord::new();
            for (index, file) in files.iter().enumerate() {
                let mut reader = csv_reader(file, options.delimiter)?;
                if csv_reader_header(&mut reader, file)? != header {
                    return Err(different_header(file, first));
                }
                while reader
                    .read_byte_record(&mut record)
                    .map_err(|e| csv_error(e, &|_, line| file.line(line)))?
                {
                    let selected = select(position)?;
                    position += 1;
                    if !selected {
                        continue;
                    }
                    writer
                        .write_byte_record(&record)
                        .map_err(|e| invalid(format!("cannot copy CSV rows: {e}")))?;
                    origins.push((index, record.position().map_or(0, |p| p.line())));
                    if origins.len() == chunk_rows {
                        flush(std::mem::replace(&mut writer, start()?), &mut origins)?;
                    }
                }
            }
            if !origins.is_empty() {
                flush(writer, &mut origins)?;
            }
        }
        DataFormat::Parquet | DataFormat::Arrow => {
            let (schema, _) = shared_batches(format, first)?;
            let mut held: Vec<RecordBatch> = Vec::new();
            let mut held_rows = 0usize;
            let mut flush = |held: &mut Vec<RecordBatch>| -> Result<(), ModelError> {
                let batches = std::mem::take(held);
                each(ingest_batch_rows(
                    &schema,
                    batches.into_iter().map(Ok),
                    String::new(),
                    format.name(),
                    options,
                    Rows::Part,
                )?)
            };
            for file in files {
                let (_, batches) = shared_batches(format, file)?;
                for batch in batches {
                    let batch = batch?;
                    let mask = (0..batch.num_rows())
                        .map(|r| select(position + r))
                        .collect::<Result<Vec<bool>, _>>()?;
                    position += batch.num_rows();
                    let kept = mask.iter().filter(|&&k| k).count();
                    if kept == 0 {
                        continue;
                    }
                    let batch = if kept == batch.num_rows() {
                        batch
                    } else {
                        arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(mask))
                            .map_err(|e| invalid(format!("{}: cannot select rows: {e}", file.name)))?
                    };
                    held_rows += batch.num_rows();
                    held.push(batch);
                    if held_rows >= chunk_rows {
                        flush(&mut held)?;
                        held_rows = 0;
                    }
                }
            }
            if held_rows > 0 {
                flush(&mut held)?;
            }
        }
    }
    Ok(())
}

type CsvReader<'a> = csv::Reader<Box<dyn BufRead + 'a>>;

/// A CSV reader of `file`, past a byte-order mark.
fn csv_reader(file: &SharedFile, delimiter: u8) -> Result<CsvReader<'_>, ModelError> {
    let mut reader = file.reader()?;
    let starts_with_mark = reader
        .fill_buf()
        .map_err(|e| file.unreadable(e))?
        .starts_with(b"\xEF\xBB\xBF");
    if starts_with_mark {
        reader.consume(3);
    }
    Ok(csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .from_reader(reader))
}

fn csv_reader_header(reader: &mut CsvReader<'_>, file: &SharedFile) -> Result<csv::ByteRecord, ModelError> {
    Ok(reader
        .byte_headers()
        .map_err(|e| invalid(format!("{}: malformed CSV header: {e}", file.name)))?
        .clone())
}

fn csv_header(file: &SharedFile, delimiter: u8) -> Result<csv::ByteRecord, ModelError> {
    csv_reader_header(&mut csv_reader(file, delimiter)?, file)
}

fn different_header(file: &SharedFile, first: &SharedFile) -> ModelError {
    invalid(format!(
        "{}: its header differs from that of {}: every file of a source must have the same columns",
        file.name, first.name
    ))
}
