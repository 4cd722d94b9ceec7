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

/// A streaming reader of Kaggle-format passenger rows.
pub struct PassengerCsv<R: Read> {
    reader: csv::Reader<R>,
    headers: csv::StringRecord,
    has_label: bool,
    record: csv::StringRecord,
    /// The line the next record starts on. Counted here rather than taken from the csv
    /// reader, whose line numbers run one behind for `\r\n` files.
    next_line: u64,
    /// The line the current record started on.
    line: u64,
}

/// Lines a record spans beyond its first (newlines inside quoted fields).
fn extra_lines(record: &csv::StringRecord) -> u64 {
    record
        .iter()
        .map(|f| f.bytes().filter(|b| *b == b'\n').count() as u64)
        .sum()
}

impl PassengerCsv<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, CsvError> {
        let file = File::open(path).map_err(|cause| CsvError::Open {
            path: path.display().to_string(),
            cause,
        })?;
        Self::new(BufReader::with_capacity(1 << 16, file))
    }
}

impl<R: Read> PassengerCsv<R> {
    pub fn new(input: R) -> Result<Self, CsvError> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(false)
            .from_reader(input);
        let headers = reader.headers()?.clone();
        for column in REQUIRED_COLUMNS {
            if !headers.iter().any(|h| h == *column) {
                return Err(CsvError::MissingColumn(column));
            }
        }
        let has_label = headers.iter().any(|h| h == "Survived");
        let next_line = 2 + extra_lines(&headers);
        Ok(Self {
            reader,
            headers,
            has_label,
            record: csv::StringRecord::new(),
            next_line,
            line: next_line,
        })
    }

    /// True when the input has a `Survived` column.
    pub fn has_label(&self) -> bool {
        self.has_label
    }

    /// Bytes consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The next row, or `None` at the end. A malformed or invalid row is an error naming its
    /// line and fields.
    pub fn next_record(&mut self) -> Option<Result<PassengerRecord, CsvError>> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                self.line = self.next_line;
                self.next_line = self.line + 1 + extra_lines(&self.record);
                Some(self.parse_current())
            }
            Err(e) => Some(Err(CsvError::Row {
                line: self.next_line,
                message: e.to_string(),
            })),
        }
    }

    fn parse_current(&self) -> Result<PassengerRecord, CsvError> {
        let line = self.line;
        let row_error = |message: String| CsvError::Row { line, message };
        let row: CsvRow = self.record.deserialize(Some(&self.headers)).map_err(|e| {
            let column = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err
                    .field()
                    .and_then(|i| self.headers.get(i as usize))
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
pub fn read_all(path: &Path) -> Result<Vec<PassengerRecord>, CsvError> {
    PassengerCsv::open(path)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n";

    fn parse(body: &str) -> Result<Vec<PassengerRecord>, CsvError> {
        PassengerCsv::new(format!("{HEADER}{body}").as_bytes())?.collect()
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
        let mut csv = PassengerCsv::new(input.as_bytes()).unwrap();
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
        let err = PassengerCsv::new(crlf.as_bytes())
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert!(err.to_string().starts_with("line 3:"), "{err}");
    }

    #[test]
    fn missing_column_is_named() {
        let err = PassengerCsv::new("PassengerId,Pclass\n1,3\n".as_bytes())
            .err()
            .unwrap();
        assert!(err.to_string().contains("Name"), "{err}");
    }
}
