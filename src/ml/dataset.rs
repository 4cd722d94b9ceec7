//! Training sets: labelled passengers and the fingerprint of the rows a model was trained on.

use sha2::{Digest, Sha256};

use crate::feature_store::{Passenger, PassengerRecord};

/// Labelled rows, ready for fitting, and the unlabelled passengers read with them.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    pub passengers: Vec<Passenger>,
    pub labels: Vec<bool>,
    /// Passengers without a label: not training rows, but their tickets count towards the
    /// fare per head of the passengers sharing them (`Preprocessing::fit`).
    pub unlabelled: Vec<Passenger>,
    /// Over the labelled and the unlabelled records.
    pub data_hash: String,
}

impl TrainingSet {
    /// Splits the records into labelled rows and unlabelled passengers (each in id order, so
    /// the hash does not depend on input order).
    pub fn from_records(records: &[PassengerRecord]) -> Self {
        let (mut labelled, mut unlabelled): (Vec<&PassengerRecord>, Vec<&PassengerRecord>) =
            records.iter().partition(|r| r.survived.is_some());
        labelled.sort_by_key(|r| r.passenger_id);
        unlabelled.sort_by_key(|r| r.passenger_id);
        let all: Vec<&PassengerRecord> = labelled.iter().chain(&unlabelled).copied().collect();
        Self {
            data_hash: data_hash(&all),
            passengers: labelled.iter().map(|r| r.passenger.clone()).collect(),
            labels: labelled.iter().map(|r| r.survived == Some(true)).collect(),
            unlabelled: unlabelled.iter().map(|r| r.passenger.clone()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|y| **y).count()
    }
}

/// `sha256:<hex>` over one canonical JSON line per record (id, label or `null`, raw fields).
pub fn data_hash(records: &[&PassengerRecord]) -> String {
    let mut hasher = Sha256::new();
    for r in records {
        let line = serde_json::json!({
            "label": r.survived,
            "passenger": r.passenger.to_raw(Some(r.passenger_id)),
        });
        hasher.update(line.to_string().as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
