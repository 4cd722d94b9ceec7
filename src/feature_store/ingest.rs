//! Reading passengers from CSV in the Kaggle format (`train.csv` with `Survived`, `test.csv`
//! without), streaming, with errors that name the line and the field.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::Deserialize;

use super::passenger::{PassengerRecord, RawPassenger};

/// Columns every input must have (`Survived` is optional).
pub const REQUIRED_COLUMNS: &[&str] = &[
    "PassengerId",
    "Pclass",
    "Name",
    "Sex",
    "Age",
    "SibSp",
    "Parch",
    "Ticket",
    "Fare",
    "Cabin",
    "Embarked",
];

/// The longest record (a row, or the header line) read by default: a passenger's row is
/// well under 1 KiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;

/// The csv reader's own buffer: it reads at most this far ahead of the record it parses.
const CSV_BUFFER: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{path}: {cause}")]
    Open { path: String, cause: std::io::Error },
    #[error("header: missing column {0}")]
    MissingColumn(&'static str),
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error("reading CSV: {0}")]
    Read(#[from] csv::Error),
}

#[derive(Debug, Deserialize)]
struct CsvRow {
    #[serde(rename = "PassengerId")]
    passenger_id: i64,
    #[serde(rename = "Survived", default)]
    survived: Option<i64>,
    #[serde(rename = "Pclass")]
    pclass: Option<i64>,
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Sex")]
    sex: Option<String>,
    #[serde(rename = "Age")]
    age: Option<f64>,
    #[serde(rename = "SibSp")]
    sibsp: Option<i64>,
    #[serde(rename = "Parch")]
    parch: Option<i64>,
    #[serde(rename = "Ticket")]
    ticket: Option<String>,
    #[serde(rename = "Fare")]
    fare: Option<f64>,
    #[serde(rename = "Cabin")]
    cabin: Option<String>,
    #[serde(rename = "Embarked")]
    embarked: Option<String>,
}

/// The input, handed to the csv reader no further than `limit` bytes (plus the reader's
/// buffer) past the start of the record being read: a record without an end (an unclosed
/// quote, a header line without a newline) stops there instead of growing in memory.
struct Bounded<R> {
    inner: R,
    /// Bytes handed out so far.
    read: u64,
    /// Where the record being read starts.
    record_start: u64,
    limit: usize,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let end = self.record_start + (self.limit + CSV_BUFFER) as u64;
        let allowed = usize::try_from(end.saturating_sub(self.read)).unwrap_or(usize::MAX);
        if allowed == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                too_long(self.limit),
            ));
        }
        let n = buf.len().min(allowed);
        let n = self.inner.read(&mut buf[..n])?;
        self.read += n as u64;
        Ok(n)
    }
}

fn too_long(limit: usize) -> String {
    format!("the record is longer than {limit} bytes (data.max_csv_record_bytes)")
}

/// A streaming CSV reader whose records (rows and header) are at most a given number of bytes
/// long: a longer one is an error naming its line, and memory stays within that bound whatever
/// the input holds. Lines are counted here rather than taken from the csv reader, whose line
/// numbers run one behind for `\r\n` files.
pub struct BoundedCsv<R: Read> {
    reader: csv::Reader<Bounded<R>>,
    headers: csv::StringRecord,
    record: csv::StringRecord,
    /// The line the next record starts on.
    next_line: u64,
    /// The line the current record started on.
    line: u64,
}

impl<R: Read> BoundedCsv<R> {
    pub fn new(input: R, max_record_bytes: usize) -> Result<Self, CsvError> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(false)
            .buffer_capacity(CSV_BUFFER)
            .from_reader(Bounded {
                inner: input,
                read: 0,
                record_start: 0,
                limit: max_record_bytes,
            });
        let header_error = |message: String| CsvError::Row { line: 1, message };
        let headers = reader
            .headers()
            .map_err(|e| header_error(e.to_string()))?
            .clone();
        if reader.position().byte() > max_record_bytes as u64 {
            return Err(header_error(too_long(max_record_bytes)));
        }
        reader.get_mut().record_start = reader.position().byte();
        let next_line = 2 + extra_lines(&headers);
        Ok(Self {
            reader,
            headers,
            record: csv::StringRecord::new(),
            next_line,
            line: next_line,
        })
    }

    pub fn headers(&self) -> &csv::StringRecord {
        &self.headers
    }

    /// The line the current record started on.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Bytes consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The next record, or `None` at the end; an error names its line.
    pub fn next_raw(&mut self) -> Option<Result<&csv::StringRecord, CsvError>> {
        let start = self.reader.get_ref().record_start;
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                self.line = self.next_line;
                self.next_line = self.line + 1 + extra_lines(&self.record);
                let end = self.reader.position().byte();
                self.reader.get_mut().record_start = end;
                let limit = self.reader.get_ref().limit;
                if end - start > limit as u64 {
                    return Some(Err(CsvError::Row {
                        line: self.line,
                        message: too_long(limit),
                    }));
                }
                Some(Ok(&self.record))
            }
            Err(e) => Some(Err(CsvError::Row {
                line: self.next_line,
                message: e.to_string(),
            })),
        }
    }
}

/// A streaming reader of Kaggle-format passenger rows.
pub struct PassengerCsv<R: Read> {
    csv: BoundedCsv<R>,
    has_label: bool,
}

/// Lines a record spans beyond its first (newlines inside quoted fields).
fn extra_lines(record: &csv::StringRecord) -> u64 {
    record
        .iter()
        .map(|f| f.bytes().filter(|b| *b == b'\n').count() as u64)
        .sum()
}

impl PassengerCsv<BufReader<File>> {
    /// Opens a file whose records (rows and header) are at most `max_record_bytes` long.
    pub fn open(path: &Path, max_record_bytes: usize) -> Result<Self, CsvError> {
        let file = File::open(path).map_err(|cause| CsvError::Open {
            path: path.display().to_string(),
            cause,
        })?;
        Self::new(BufReader::with_capacity(1 << 16, file), max_record_bytes)
    }
}

impl<R: Read> PassengerCsv<R> {
    /// Reads `input`, whose records (rows and header) are at most `max_record_bytes` long: a
    /// longer one is an error naming its line, and memory stays within that bound whatever
    /// the input holds.
    pub fn new(input: R, max_record_bytes: usize) -> Result<Self, CsvError> {
        let csv = BoundedCsv::new(input, max_record_bytes)?;
        for column in REQUIRED_COLUMNS {
            if !csv.headers().iter().any(|h| h == *column) {
                return Err(CsvError::MissingColumn(column));
            }
        }
        let has_label = csv.headers().iter().any(|h| h == "Survived");
        Ok(Self { csv, has_label })
    }

    /// True when the input has a `Survived` column.
    pub fn has_label(&self) -> bool {
        self.has_label
    }

    /// Bytes consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.csv.position()
    }

    /// The next row, or `None` at the end. A malformed or invalid row is an error naming its
    /// line and fields.
    pub fn next_record(&mut self) -> Option<Result<PassengerRecord, CsvError>> {
        match self.csv.next_raw()? {
            Ok(_) => Some(self.parse_current()),
            Err(e) => Some(Err(e)),
        }
    }

    fn parse_current(&self) -> Result<PassengerRecord, CsvError> {
        let line = self.csv.line;
        let headers = &self.csv.headers;
        let row_error = |message: String| CsvError::Row { line, message };
        let row: CsvRow = self.csv.record.deserialize(Some(headers)).map_err(|e| {
            let column = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err
                    .field()
                    .and_then(|i| headers.get(i as usize))
                    .unwrap_or("?"),
                _ => "?",
            };
            let detail = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err.kind().to_string(),
                other => format!("{other:?}"),
            };
            row_error(format!("column {column}: {detail}"))
        })?;
        let survived = match row.survived {
            None => None,
            Some(0) => Some(false),
            Some(1) => Some(true),
            Some(other) => {
                return Err(row_error(format!(
                    "column Survived: must be 0 or 1, got {other}"
                )));
            }
        };
        let passenger = RawPassenger {
            passenger_id: Some(row.passenger_id),
            pclass: row.pclass,
            sex: row.sex,
            age: row.age,
            sibsp: row.sibsp,
            parch: row.parch,
            fare: row.fare,
            embarked: row.embarked,
            name: row.name,
            ticket: row.ticket,
            cabin: row.cabin,
        }
        .validate()
        .map_err(|e| row_error(e.to_string()))?;
        Ok(PassengerRecord {
            passenger_id: row.passenger_id,
            survived,
            passenger,
        })
    }
}

impl<R: Read> Iterator for PassengerCsv<R> {
    type Item = Result<PassengerRecord, CsvError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

/// Reads a whole CSV file, stopping at the first bad row.
pub fn read_all(path: &Path, max_record_bytes: usize) -> Result<Vec<PassengerRecord>, CsvError> {
    PassengerCsv::open(path, max_record_bytes)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n";

    fn parse(body: &str) -> Result<Vec<PassengerRecord>, CsvError> {
        PassengerCsv::new(
            format!("{HEADER}{body}").as_bytes(),
            DEFAULT_MAX_RECORD_BYTES,
        )?
        .collect()
    }

    #[test]
    fn reads_labelled_rows_with_missing_values() {
        let rows = parse(
            "1,0,3,\"Braund, Mr. Owen Harris\",male,22,1,0,A/5 21171,7.25,,S\n\
             6,0,3,\"Moran, Mr. James\",male,,0,0,330877,8.4583,,Q\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].survived, Some(false));
        assert_eq!(
            rows[0].passenger.name.as_deref(),
            Some("Braund, Mr. Owen Harris")
        );
        assert_eq!(rows[1].passenger.age, None);
        assert_eq!(rows[1].passenger_id, 6);
    }

    #[test]
    fn unlabelled_input_has_no_survived() {
        let input = "PassengerId,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n\
                     892,3,\"Kelly, Mr. James\",male,34.5,0,0,330911,7.8292,,Q\n";
        let mut csv = PassengerCsv::new(input.as_bytes(), DEFAULT_MAX_RECORD_BYTES).unwrap();
        assert!(!csv.has_label());
        let row = csv.next().unwrap().unwrap();
        assert_eq!((row.passenger_id, row.survived), (892, None));
    }

    #[test]
    fn bad_rows_name_line_and_field() {
        let err = parse(
            "1,0,3,\"A, Mr. B\",male,22,1,0,T,7.25,,S\n\
             2,0,3,\"C, Mr. D\",male,abc,1,0,T,7.25,,S\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("line 3: column Age"), "{text}");

        let err = parse("1,0,7,\"A, Mr. B\",robot,22,1,0,T,7.25,,S\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("line 2:") && text.contains("pclass") && text.contains("sex"),
            "{text}"
        );

        let err = parse("1,2,3,\"A, Mr. B\",male,22,1,0,T,7.25,,S\n").unwrap_err();
        assert!(err.to_string().contains("Survived"), "{err}");

        let err = parse("1,0,3,\"A, Mr. B\",male,22\n").unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }

    #[test]
    fn line_numbers_are_right_for_crlf_files() {
        let crlf = format!(
            "{}1,0,3,\"A, Mr. B\",male,22,1,0,T,7.25,,S\r\n2,0,3,\"C, Mr. D\",male,x,1,0,T,7.25,,S\r\n",
            HEADER.replace('\n', "\r\n")
        );
        let err = PassengerCsv::new(crlf.as_bytes(), DEFAULT_MAX_RECORD_BYTES)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert!(err.to_string().starts_with("line 3:"), "{err}");
    }

    /// An endless input of `fill` after `prefix`, counting what was read of it.
    struct Endless<'a> {
        prefix: &'a [u8],
        fill: u8,
        read: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl Read for Endless<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = if self.prefix.is_empty() {
                buf.fill(self.fill);
                buf.len()
            } else {
                let n = self.prefix.len().min(buf.len());
                buf[..n].copy_from_slice(&self.prefix[..n]);
                self.prefix = &self.prefix[n..];
                n
            };
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    #[test]
    fn a_record_without_an_end_stops_at_the_limit() {
        let limit = 1024;
        let within = (limit + CSV_BUFFER + 64 * 1024) as u64;
        // A row opening a quote it never closes.
        let prefix = format!("{HEADER}1,0,3,\"");
        let read = std::rc::Rc::default();
        let input = Endless {
            prefix: prefix.as_bytes(),
            fill: b'A',
            read: std::rc::Rc::clone(&read),
        };
        let err = PassengerCsv::new(input, limit)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("line 2: the record is longer than 1024 bytes"),
            "{err}"
        );
        assert!(read.get() < within, "read {} bytes", read.get());

        // A header line without a newline.
        let read = std::rc::Rc::default();
        let input = Endless {
            prefix: b"PassengerId,",
            fill: b'P',
            read: std::rc::Rc::clone(&read),
        };
        let err = PassengerCsv::new(input, limit).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("line 1: the record is longer than 1024 bytes"),
            "{err}"
        );
        assert!(read.get() < within, "read {} bytes", read.get());
    }

    #[test]
    fn records_up_to_the_limit_are_read_and_longer_ones_named() {
        let row =
            |name_len: usize| format!("1,0,3,\"{}\",male,22,1,0,T,7.25,,S\n", "x".repeat(name_len));
        let short = row(10);
        // Every record but one exactly at the limit, so a buffer boundary falls everywhere.
        let limit = short.len() + 300;
        let mut body = String::new();
        for _ in 0..200 {
            body.push_str(&short);
            body.push_str(&row(310));
        }
        let input = format!("{HEADER}{body}");
        let rows: Vec<_> = PassengerCsv::new(input.as_bytes(), limit)
            .unwrap()
            .collect();
        assert_eq!(rows.len(), 400);
        // 310 - 256 characters is over the name's own limit: these rows are read whole and
        // refused by validation, not by the record bound.
        assert!(rows[1].as_ref().unwrap_err().to_string().contains("name"));

        let input = format!("{HEADER}{short}{}", row(311));
        let err = PassengerCsv::new(input.as_bytes(), limit)
            .unwrap()
            .nth(1)
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("line 3: the record is longer than"),
            "{err}"
        );
        // The header is held to the same bound.
        let err = PassengerCsv::new(input.as_bytes(), HEADER.len() - 1)
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("line 1:"), "{err}");
    }

    #[test]
    fn missing_column_is_named() {
        let err = PassengerCsv::new(
            "PassengerId,Pclass\n1,3\n".as_bytes(),
            DEFAULT_MAX_RECORD_BYTES,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("Name"), "{err}");
    }
}
