//! Training sets: labelled passengers and the fingerprint of the rows a model was trained on.

use sha2::{Digest, Sha256};

use crate::feature_store::{Passenger, PassengerRecord};

/// Labelled rows, ready for fitting.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    pub passengers: Vec<Passenger>,
    pub labels: Vec<bool>,
    pub data_hash: String,
}

impl TrainingSet {
    /// Keeps the labelled records (in id order, so the hash does not depend on input order).
    pub fn from_records(records: &[PassengerRecord]) -> Self {
        let mut labelled: Vec<&PassengerRecord> =
            records.iter().filter(|r| r.survived.is_some()).collect();
        labelled.sort_by_key(|r| r.passenger_id);
        Self {
            data_hash: data_hash(&labelled),
            passengers: labelled.iter().map(|r| r.passenger.clone()).collect(),
            labels: labelled.iter().map(|r| r.survived == Some(true)).collect(),
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

/// `sha256:<hex>` over one canonical JSON line per record (id, label, raw fields).
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
