//! The predictions of this process that feedback can find without the request log: a ring of
//! fixed capacity, oldest overwritten first, indexed by request id and by passenger id.
//!
//! Every prediction is inserted, so an insert must be cheap and memory bounded: a prediction
//! is one 56-byte slot (a UUID request id kept as its 16 bytes, a model version as an index
//! into a small table) plus 8 bytes of each fixed-size [`Index`], and an insert writes a slot
//! and an index bucket or two under one short lock. What falls out of the ring or its indexes
//! (or was never in them) is looked up in the request log.
//! Inserts 2.8x a `VecDeque` with two `HashMap`s, 24x two `moka` caches (benches/machinery.rs).

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use super::performance::Scored;
use crate::core::time::Micros;

/// A request id as kept in a slot: the 16 bytes of a lower-case hyphenated UUID (every id the
/// service makes), or the text of any other id a client sent in `x-request-id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RequestId {
    Uuid([u8; 16]),
    Text(Arc<str>),
}

impl RequestId {
    /// The kept form of `text`. Only the canonical spelling becomes bytes, so that
    /// [`RequestId::text`] gives back exactly what was recorded.
    fn of(text: &Arc<str>) -> Self {
        match uuid::Uuid::try_parse(text) {
            Ok(id) if id.hyphenated().encode_lower(&mut [0; 36]) == &**text => {
                Self::Uuid(id.into_bytes())
            }
            _ => Self::Text(Arc::clone(text)),
        }
    }

    /// For a lookup: the same form without keeping the text.
    fn lookup(text: &str) -> Self {
        Self::of(&Arc::from(text))
    }

    fn text(&self) -> Arc<str> {
        match self {
            Self::Uuid(bytes) => {
                let id = uuid::Uuid::from_bytes(*bytes);
                Arc::from(&*id.hyphenated().encode_lower(&mut [0; 36]))
            }
            Self::Text(text) => Arc::clone(text),
        }
    }
}

/// Model versions one ring tells apart (16-bit indexes; a handful in practice, few enough
/// for the tests to reach).
#[cfg(not(test))]
const MAX_VERSIONS: usize = 1 << 16;
#[cfg(test)]
const MAX_VERSIONS: usize = 100;

/// One remembered prediction (56 bytes).
#[derive(Debug, Clone)]
struct Slot {
    request: RequestId,
    at: Micros,
    probability: f64,
    /// Meaningful only with `has_passenger` (an `Option<i64>` would take 8 more bytes).
    passenger_id: i64,
    position: u32,
    version: u16,
    has_passenger: bool,
}

impl Slot {
    fn passenger(&self) -> Option<i64> {
        self.has_passenger.then_some(self.passenger_id)
    }
}

/// Entries per bucket of an [`Index`].
const WAYS: usize = 4;

/// A fixed-size index from a 64-bit key (a keyed hash) to a prediction, 4-way
/// set-associative: a key may sit in any of the 4 entries of its bucket. An entry holds the
/// prediction's sequence number (the count of predictions written before it, modulo 2^32),
/// so the index knows how old each entry is and whether its slot was overwritten since. A
/// new key takes the entry of the same key, an unused or overwritten one, or else the oldest.
/// Every hit is also checked against the slot's content. A key pushed out of its bucket by
/// newer ones (a few percent of the oldest predictions, at 2 entries per slot) is found in
/// the request log instead. Unlike a hash map, it never grows, rehashes or fills with
/// tombstones.
#[derive(Debug, Default)]
struct Index {
    buckets: Vec<[u32; WAYS]>,
}

/// Where the ring stands, for an [`Index`]: how many predictions were ever written, how many
/// slots hold one, and how many there are.
#[derive(Debug, Clone, Copy)]
struct Window {
    written: u64,
    len: usize,
    capacity: usize,
}

impl Window {
    /// How many predictions were written after the one numbered `seq`: 0 for the newest;
    /// `len` or more for one no longer in the ring (or never written: an unused entry).
    fn age(self, seq: u32) -> usize {
        ((self.written as u32).wrapping_sub(seq).wrapping_sub(1)) as usize
    }

    /// The slot of the prediction numbered `seq`, while it is in the ring.
    fn slot(self, seq: u32) -> Option<usize> {
        let age = self.age(seq);
        let held = (self.len as u64).min(self.written);
        ((age as u64) < held)
            .then(|| ((self.written - 1 - age as u64) % self.capacity as u64) as usize)
    }
}

impl Index {
    fn bucket_of(&self, key: u64) -> Option<usize> {
        let mask = self.buckets.len().checked_sub(1)?;
        Some(key as usize & mask)
    }

    /// The slot of the prediction `key` points to for which `matches` holds.
    fn find(&self, key: u64, window: Window, matches: impl Fn(usize) -> bool) -> Option<usize> {
        self.buckets[self.bucket_of(key)?]
            .iter()
            .filter_map(|&seq| window.slot(seq))
            .find(|&slot| matches(slot))
    }

    /// Points `key` at the newest prediction (`window.written - 1`). `same` tells a slot of
    /// the same key, whose entry is reused. The buckets (`entries` in all, rounded up to a
    /// power of two) are allocated on first use.
    fn insert(&mut self, key: u64, window: Window, entries: usize, same: impl Fn(usize) -> bool) {
        if self.buckets.is_empty() {
            let n = (entries.next_power_of_two() / WAYS).max(1);
            // Sequence numbers that read as long overwritten.
            let unused = (window.written as u32).wrapping_sub(u32::MAX / 2);
            self.buckets = vec![[unused; WAYS]; n];
        }
        let Some(bucket) = self.bucket_of(key) else {
            return;
        };
        let bucket = &mut self.buckets[bucket];
        let way = bucket
            .iter()
            .position(|&seq| window.slot(seq).is_some_and(&same))
            .unwrap_or_else(|| {
                (0..WAYS)
                    .max_by_key(|&w| window.age(bucket[w]))
                    .unwrap_or_default()
            });
        bucket[way] = (window.written - 1) as u32;
    }
}

#[derive(Debug)]
struct Ring {
    slots: Vec<Slot>,
    /// Predictions ever written; the next goes to slot `written % capacity`.
    written: u64,
    /// Keyed hash of a request id to its first prediction.
    by_request: Index,
    /// Keyed hash of a passenger id to the passenger's latest prediction.
    by_passenger: Index,
    /// Model versions by index (a handful per process).
    versions: Vec<Arc<str>>,
}

/// The ring and its indexes; see the module documentation.
#[derive(Debug)]
pub struct RecentPredictions {
    capacity: usize,
    hasher: RandomState,
    ring: Mutex<Ring>,
}

impl RecentPredictions {
    /// A ring for `capacity` predictions (0 remembers nothing). Memory is taken as it fills.
    pub fn new(capacity: usize) -> Self {
        // Slot indexes are u32; a larger setting is capped (16 GiB of slots).
        let capacity = capacity.min(u32::MAX as usize);
        Self {
            capacity,
            hasher: RandomState::new(),
            ring: Mutex::new(Ring {
                slots: Vec::new(),
                written: 0,
                by_request: Index::default(),
                by_passenger: Index::default(),
                versions: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, id: &RequestId) -> u64 {
        self.hasher.hash_one(id)
    }

    fn passenger_key(&self, id: i64) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Index entries per index: two per slot.
    fn entries(&self) -> usize {
        self.capacity.saturating_mul(2)
    }

    /// Remembers one request's predictions (all from the same request id), evicting the
    /// oldest. Of a request with more predictions than the ring holds, the last ones fill it
    /// (its passengers' latest predictions are there; the request itself, lacking its first
    /// prediction, is found in the log).
    pub fn insert(&self, scored: &[Scored]) {
        let scored = &scored[scored.len().saturating_sub(self.capacity)..];
        let Some(first) = scored.first() else { return };
        let request = RequestId::of(&first.request_id);
        let key = self.key(&request);
        let mut ring = self.lock();
        // Model versions are kept as 16-bit indexes: past 65,536 of them in one process the
        // ring starts afresh, rather than keep a request half remembered.
        let Some(version) = ring.version_index(&first.model_version) else {
            ring.clear();
            return;
        };
        for s in scored {
            let version = if Arc::ptr_eq(&s.model_version, &first.model_version) {
                version
            } else {
                match ring.version_index(&s.model_version) {
                    Some(v) => v,
                    None => {
                        ring.clear();
                        return;
                    }
                }
            };
            let slot = Slot {
                request: request.clone(),
                at: s.at,
                probability: s.probability,
                passenger_id: s.passenger_id.unwrap_or(0),
                position: s.position,
                version,
                has_passenger: s.passenger_id.is_some(),
            };
            self.put(&mut ring, slot);
            if let Some(id) = s.passenger_id {
                let window = self.window(&ring);
                let Ring {
                    slots,
                    by_passenger,
                    ..
                } = &mut *ring;
                by_passenger.insert(self.passenger_key(id), window, self.entries(), |other| {
                    slots[other].passenger() == Some(id)
                });
            }
        }
        // The request is indexed by its first prediction, numbered `written - scored.len()`.
        let window = Window {
            written: ring.written - (scored.len() as u64 - 1),
            ..self.window(&ring)
        };
        let Ring {
            slots, by_request, ..
        } = &mut *ring;
        by_request.insert(key, window, self.entries(), |other| {
            let slot = &slots[other];
            slot.position == 0 && slot.request == request
        });
    }

    fn window(&self, ring: &Ring) -> Window {
        Window {
            written: ring.written,
            len: ring.slots.len(),
            capacity: self.capacity,
        }
    }

    /// Writes `slot` into the ring, over the oldest once full. Index entries of the
    /// overwritten prediction read as overwritten from then on.
    fn put(&self, ring: &mut Ring, slot: Slot) {
        let index = (ring.written % self.capacity as u64) as usize;
        ring.written += 1;
        if ring.slots.len() < self.capacity {
            if ring.slots.capacity() == 0 {
                ring.slots.reserve_exact(self.capacity);
            }
            ring.slots.push(slot);
        } else {
            ring.slots[index] = slot;
        }
    }

    /// The predictions of request `request_id` made at `since` or later, in position order;
    /// `None` when the ring does not hold the whole request.
    pub fn by_request(&self, request_id: &str, since: Micros) -> Option<Vec<Scored>> {
        let request = RequestId::lookup(request_id);
        let key = self.key(&request);
        let ring = self.lock();
        let start = ring.by_request.find(key, self.window(&ring), |slot| {
            let slot = &ring.slots[slot];
            slot.position == 0 && slot.request == request
        })?;
        let len = ring.slots.len();
        // The request's predictions are contiguous; the walk stops at the oldest slot (what
        // follows the newest), so it never runs into an older request of the same id.
        let oldest = (ring.written % self.capacity as u64) as usize % len.max(1);
        let text = request.text();
        let mut found = Vec::new();
        for step in 0..len {
            let index = (start + step) % len;
            let slot = &ring.slots[index];
            if (step > 0 && index == oldest)
                || slot.request != request
                || slot.position as usize != step
            {
                break;
            }
            found.push(ring.scored(slot, Some(&text)));
        }
        let first = found.first()?;
        (first.at >= since).then_some(found)
    }

    /// The latest prediction for passenger `id` made at `since` or later.
    pub fn by_passenger(&self, id: i64, since: Micros) -> Option<Scored> {
        let ring = self.lock();
        let found = ring
            .by_passenger
            .find(self.passenger_key(id), self.window(&ring), |slot| {
                ring.slots[slot].passenger() == Some(id)
            })?;
        let slot = &ring.slots[found];
        (slot.at >= since).then(|| ring.scored(slot, None))
    }

    /// Predictions held now.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ring {
    /// Forgets everything (sequence numbers restart with the slots).
    fn clear(&mut self) {
        self.slots.clear();
        self.written = 0;
        self.by_request = Index::default();
        self.by_passenger = Index::default();
        self.versions.clear();
    }

    /// The index of `version`, added when new; `None` past 65,536 versions in one process
    /// (the caller then clears the ring).
    fn version_index(&mut self, version: &Arc<str>) -> Option<u16> {
        if let Some(i) = self.versions.iter().position(|v| v == version) {
            return u16::try_from(i).ok();
        }
        if self.versions.len() >= MAX_VERSIONS {
            return None;
        }
        let i = u16::try_from(self.versions.len()).ok()?;
        self.versions.push(Arc::clone(version));
        Some(i)
    }

    /// The prediction in `slot`; `request_id` is its request id's text when the caller has it.
    fn scored(&self, slot: &Slot, request_id: Option<&Arc<str>>) -> Scored {
        Scored {
            request_id: request_id.map_or_else(|| slot.request.text(), Arc::clone),
            position: slot.position,
            passenger_id: slot.passenger(),
            probability: slot.probability,
            model_version: Arc::clone(&self.versions[usize::from(slot.version)]),
            at: slot.at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "01a23ada-6c11-7f26-8cb6-151a7fbb3617";

    fn scored(request: &str, position: u32, passenger: Option<i64>, at: Micros) -> Scored {
        Scored {
            request_id: request.into(),
            position,
            passenger_id: passenger,
            probability: f64::from(position) / 10.0,
            model_version: "v1".into(),
            at,
        }
    }

    #[test]
    fn a_slot_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 56);
    }

    #[test]
    fn request_ids_come_back_as_they_were_sent() {
        for text in [
            UUID,
            "01A23ADA-6C11-7F26-8CB6-151A7FBB3617",
            "my-id",
            "",
            "{",
        ] {
            let id = RequestId::of(&Arc::from(text));
            assert_eq!(&*id.text(), text);
            assert_eq!(id, RequestId::lookup(text));
        }
        assert!(matches!(RequestId::lookup(UUID), RequestId::Uuid(_)));
        // Not the canonical spelling: kept as text, so it is not confused with UUID.
        assert!(matches!(
            RequestId::lookup("01A23ADA-6C11-7F26-8CB6-151A7FBB3617"),
            RequestId::Text(_)
        ));
    }

    #[test]
    fn finds_requests_and_passengers() {
        let r = RecentPredictions::new(10);
        r.insert(&[scored(UUID, 0, Some(7), 100)]);
        r.insert(&[
            scored("batch", 0, Some(8), 200),
            scored("batch", 1, None, 200),
            scored("batch", 2, Some(7), 200),
        ]);
        let one = r.by_request(UUID, 0).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(&*one[0].request_id, UUID);
        assert_eq!(one[0].passenger_id, Some(7));
        assert_eq!(&*one[0].model_version, "v1");
        let batch = r.by_request("batch", 0).unwrap();
        let positions: Vec<u32> = batch.iter().map(|s| s.position).collect();
        assert_eq!(positions, [0, 1, 2]);
        assert_eq!(batch[1].passenger_id, None);
        assert_eq!(batch[2].probability, 0.2);
        // The latest prediction of passenger 7 is the batch's.
        let latest = r.by_passenger(7, 0).unwrap();
        assert_eq!((&*latest.request_id, latest.position), ("batch", 2));
        assert!(r.by_request("other", 0).is_none());
        assert!(r.by_passenger(9, 0).is_none());
        // Older than asked for: not found here.
        assert!(r.by_request(UUID, 101).is_none());
        assert!(r.by_passenger(8, 201).is_none());
    }

    #[test]
    fn the_oldest_are_overwritten_and_unindexed() {
        let r = RecentPredictions::new(4);
        r.insert(&[scored("a", 0, Some(1), 1), scored("a", 1, Some(2), 1)]);
        r.insert(&[scored("b", 0, Some(3), 2)]);
        r.insert(&[scored("c", 0, Some(4), 3)]);
        assert_eq!(r.len(), 4);
        // "d" takes a's first slot: a is no longer whole, so it is not answered from here.
        r.insert(&[scored("d", 0, Some(5), 4)]);
        assert_eq!(r.len(), 4);
        assert!(r.by_request("a", 0).is_none());
        assert!(r.by_passenger(1, 0).is_none());
        // a's second slot still holds passenger 2's prediction.
        assert_eq!(r.by_passenger(2, 0).unwrap().position, 1);
        for id in ["b", "c", "d"] {
            assert_eq!(r.by_request(id, 0).unwrap().len(), 1, "{id}");
        }
        // Wrapping around: e spans the end and the start of the ring.
        r.insert(&[
            scored("e", 0, None, 5),
            scored("e", 1, None, 5),
            scored("e", 2, Some(9), 5),
        ]);
        let e = r.by_request("e", 0).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[2].passenger_id, Some(9));
        assert!(r.by_request("b", 0).is_none());
        assert!(r.by_request("c", 0).is_none());
        assert_eq!(r.by_request("d", 0).unwrap().len(), 1);
        assert!(r.by_passenger(3, 0).is_none());
        assert_eq!(r.by_passenger(5, 0).unwrap().request_id.as_ref(), "d");
    }

    #[test]
    fn the_index_keeps_recent_requests_as_the_ring_turns() {
        // Many times the capacity: the indexes never grow, and nearly every request still in
        // the ring is found from them (the rest would come from the request log).
        let r = RecentPredictions::new(1000);
        for i in 0..10_000i64 {
            r.insert(&[scored(&format!("req-{i}"), 0, Some(i % 3000), i)]);
        }
        let ring = r.lock();
        assert_eq!(ring.by_request.buckets.len(), 2048 / WAYS);
        assert_eq!(ring.by_passenger.buckets.len(), 2048 / WAYS);
        drop(ring);
        let found = (9000..10_000i64)
            .filter(|i| r.by_request(&format!("req-{i}"), 0).is_some())
            .count();
        // The hash key is random per process: over 300 keys the count ranged from 945 to 982
        // (median 965), so 920 fails only for a real loss.
        assert!(found >= 920, "{found} of the last 1000");
        // Newest first: the last 100 are all there.
        for i in 9900..10_000i64 {
            assert!(r.by_request(&format!("req-{i}"), 0).is_some(), "{i}");
        }
        assert!(r.by_request("req-8999", 0).is_none(), "overwritten");
        // Passengers: the latest prediction of each one still in the ring.
        let latest = r.by_passenger(9999 % 3000, 0).unwrap();
        assert_eq!(&*latest.request_id, "req-9999");
        assert!(
            r.by_passenger(2000, 0).is_none(),
            "last scored by req-8000, overwritten"
        );
    }

    #[test]
    fn a_reused_request_id_finds_its_latest_request() {
        let r = RecentPredictions::new(10);
        r.insert(&[scored("same", 0, Some(1), 1), scored("same", 1, Some(2), 1)]);
        r.insert(&[scored("same", 0, Some(3), 2)]);
        let found = r.by_request("same", 0).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].passenger_id, Some(3));
    }

    #[test]
    fn a_reused_id_never_borrows_an_older_requests_slots() {
        // Ring of 3: the old "same" batch fills slots 0 and 1, "x" slot 2; the new "same"
        // takes slot 0, just before slot 1, which still holds the old batch's position 1.
        let r = RecentPredictions::new(3);
        r.insert(&[scored("same", 0, None, 1), scored("same", 1, None, 1)]);
        r.insert(&[scored("x", 0, None, 2)]);
        r.insert(&[scored("same", 0, Some(4), 3)]);
        let found = r.by_request("same", 0).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].at, 3);
    }

    #[test]
    fn nothing_when_disabled() {
        let off = RecentPredictions::new(0);
        off.insert(&[scored("a", 0, Some(1), 1)]);
        assert!(off.is_empty());
        assert!(off.by_request("a", 0).is_none());
    }

    #[test]
    fn a_request_larger_than_the_ring_leaves_nothing_older_to_find() {
        let r = RecentPredictions::new(2);
        r.insert(&[scored("x", 0, Some(7), 1)]);
        // A batch of 3 under the same request id, scoring passenger 7 again: the older
        // prediction must not be answered for either.
        r.insert(&[
            scored("x", 0, Some(7), 2),
            scored("x", 1, Some(8), 2),
            scored("x", 2, Some(9), 2),
        ]);
        assert_eq!(r.len(), 2);
        assert!(
            r.by_request("x", 0).is_none(),
            "incomplete: left to the log"
        );
        assert!(r.by_passenger(7, 0).is_none(), "the old one is overwritten");
        assert_eq!(r.by_passenger(9, 0).unwrap().position, 2);
    }

    #[test]
    fn past_max_versions_the_ring_starts_afresh() {
        let r = RecentPredictions::new(4);
        let with_version = |request: &str, passenger: i64, version: String| {
            let mut s = scored(request, 0, Some(passenger), 1);
            s.model_version = version.into();
            s
        };
        let last = MAX_VERSIONS as i64 - 1;
        for v in 0..=last {
            r.insert(&[with_version("r", v, format!("v{v}"))]);
        }
        assert!(r.by_passenger(last, 0).is_some());
        r.insert(&[with_version("new", 1, "one too many".into())]);
        assert!(r.is_empty());
        assert!(r.by_passenger(last, 0).is_none());
        r.insert(&[with_version("after", 2, "v0".into())]);
        assert_eq!(&*r.by_request("after", 0).unwrap()[0].model_version, "v0");
    }

    #[test]
    fn versions_are_kept_per_prediction() {
        let r = RecentPredictions::new(10);
        let mut a = scored("r", 0, None, 1);
        let mut b = scored("r", 1, None, 1);
        a.model_version = "v1".into();
        b.model_version = "v2".into();
        r.insert(&[a, b]);
        let found = r.by_request("r", 0).unwrap();
        assert_eq!(&*found[0].model_version, "v1");
        assert_eq!(&*found[1].model_version, "v2");
    }
}
