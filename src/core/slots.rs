//! A share of the concurrency slots per token subject, so that one client holding many slow
//! requests can never take every slot (`server.max_concurrent_per_subject`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// How many slots each subject holds now. Entries exist only while a subject holds one, so
/// the map never outgrows the requests in flight.
#[derive(Debug)]
pub struct SubjectSlots {
    max: usize,
    held: Mutex<HashMap<Box<str>, usize>>,
}

/// One slot, given back when dropped.
#[derive(Debug)]
pub struct SubjectSlot {
    slots: Arc<SubjectSlots>,
    subject: Box<str>,
}

impl SubjectSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            held: Mutex::new(HashMap::new()),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `subject`, or `None` when it already holds `max`.
    pub fn try_acquire(self: &Arc<Self>, subject: &str) -> Option<SubjectSlot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.get_mut(subject) {
            Some(n) if *n >= self.max => return None,
            Some(n) => *n += 1,
            None => {
                held.insert(Box::from(subject), 1);
            }
        }
        Some(SubjectSlot {
            slots: Arc::clone(self),
            subject: Box::from(subject),
        })
    }

    /// Slots `subject` holds now.
    pub fn held(&self, subject: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(subject).copied().unwrap_or(0)
    }
}

impl Drop for SubjectSlot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&*self.subject) {
            *n -= 1;
            if *n == 0 {
                held.remove(&*self.subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subject_holds_at_most_its_share() {
        let slots = Arc::new(SubjectSlots::new(2));
        let a1 = slots.try_acquire("alice").unwrap();
        let _a2 = slots.try_acquire("alice").unwrap();
        assert!(slots.try_acquire("alice").is_none());
        let _b = slots.try_acquire("bob").expect("bob has his own share");
        drop(a1);
        assert_eq!(slots.held("alice"), 1);
        let _a3 = slots
            .try_acquire("alice")
            .expect("a slot given back is free again");
        drop((_a2, _a3, _b));
        assert_eq!(slots.held("alice"), 0);
        assert!(
            slots.held.lock().unwrap().is_empty(),
            "no entry outlives its slots"
        );
    }
}
