//! Property tests of the request decoders (proptest): the passenger JSON, the V2 tensor
//! decoding (JSON and binary data) and the CSV row reader never panic, whatever bytes they are given, and never
//! allocate more than a fixed multiple of their input plus a constant. A counting allocator
//! measures each decode's peak of live bytes on its own thread.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![allow(unsafe_code)] // the counting global allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use serde_json::{Value, json};

use titanic::api::extract::{Object, parse_json};
use titanic::api::oip::{InferRequest, decode, decode_with};
use titanic::feature_store::RawPassenger;
use titanic::feature_store::ingest::{DEFAULT_MAX_RECORD_BYTES, PassengerCsv};

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(by: usize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + by);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

fn shrank(by: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(by)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            shrank(layout.size() - new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes live at once on this thread while `f` ran, beyond those live before.
fn peak_allocated<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, peak - before)
}

const MAX_DEPTH: usize = 32;
const MAX_ITEMS: usize = 10_000;
/// The V2 decoder sizes each column by its shape (at most `MAX_ITEMS` rows, checked first):
/// eleven columns and the rows of passengers, whatever the input.
const TENSOR_CONSTANT: usize = 8 << 20;

/// The V2 inputs (binary tensors name them at random).
const INPUT_NAMES: [&str; 11] = [
    "passenger_id",
    "pclass",
    "sex",
    "age",
    "sibsp",
    "parch",
    "fare",
    "embarked",
    "name",
    "ticket",
    "cabin",
];

/// The allocation bound: `factor` times the input, plus `constant`.
fn within(input: usize, factor: usize, constant: usize, peak: usize) -> Result<(), TestCaseError> {
    prop_assert!(
        peak <= factor * input + constant,
        "{peak} bytes allocated for {input} bytes of input"
    );
    Ok(())
}

/// JSON values, with the keys and values the decoders know among random ones.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z ,.]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("male"),
            Just("female"),
            Just("S"),
            Just("BYTES"),
            Just("INT64")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("shape".to_owned()),
                    Just("datatype".to_owned()),
                    Just("data".to_owned()),
                    Just("inputs".to_owned()),
                    Just("pclass".to_owned()),
                    Just("age".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// V2 request bodies: the known inputs with random shapes, datatypes and data.
fn infer_body() -> impl Strategy<Value = Value> {
    let tensor = (
        prop_oneof![Just("pclass"), Just("sex"), Just("age"), Just("sibsp"), Just("parch"), Just("name"), Just("x")],
        prop_oneof![Just("INT64"), Just("FP64"), Just("BYTES"), Just("BOOL")],
        prop::collection::vec(
            prop_oneof![Just(-1i64), 0i64..20, Just(10_001), Just(i64::MAX), Just(1_000_000_000_000_000)],
            0..4,
        ),
        json_value(),
    )
        .prop_map(|(name, datatype, shape, data)| {
            json!({"name": name, "datatype": datatype, "shape": shape, "data": data})
        });
    prop::collection::vec(tensor, 0..6).prop_map(|inputs| json!({ "inputs": inputs }))
}

/// CSV text: the Kaggle header and rows, with random bytes spliced in.
fn csv_input() -> impl Strategy<Value = Vec<u8>> {
    let header = "PassengerId,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n";
    let row = prop_oneof![
        Just("892,3,\"Kelly, Mr. James\",male,34.5,0,0,330911,7.8292,,Q\n".to_owned()),
        Just("1,1,\"A\"\"B\",female,,1,0,T,,C,S\r\n".to_owned()),
        "[0-9a-z,\"\r\n ]{0,40}",
    ];
    (
        prop::collection::vec(row, 0..20),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(rows, noise, at, with_header)| {
            let mut text = if with_header {
                header.as_bytes().to_vec()
            } else {
                Vec::new()
            };
            for r in rows {
                text.extend_from_slice(r.as_bytes());
            }
            let at = at.index(text.len() + 1);
            text.splice(at..at, noise);
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn passenger_json_never_panics_and_allocates_in_proportion(value in json_value(), noise in any::<Vec<u8>>()) {
        for bytes in [serde_json::to_vec(&value).unwrap(), noise] {
            let (_, peak) = peak_allocated(|| {
                let _ = parse_json::<Object<RawPassenger>>(&bytes, MAX_DEPTH, MAX_ITEMS);
            });
            within(bytes.len(), 16, 64 << 10, peak)?;
        }
    }

    #[test]
    fn tensors_never_panic_and_allocate_in_proportion(body in infer_body()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let (_, peak) = peak_allocated(|| {
            if let Ok(Object(request)) = parse_json::<Object<InferRequest>>(&bytes, MAX_DEPTH, MAX_ITEMS) {
                let _ = decode(&request.inputs, MAX_ITEMS);
            }
        });
        within(bytes.len(), 16, TENSOR_CONSTANT, peak)?;
    }

    #[test]
    fn binary_tensors_never_panic_and_allocate_in_proportion(
        inputs in proptest::collection::vec((
            0usize..INPUT_NAMES.len(),
            prop_oneof![Just("INT64"), Just("INT8"), Just("UINT64"), Just("FP16"), Just("FP32"),
                        Just("FP64"), Just("BOOL"), Just("BYTES")],
            prop_oneof![0i64..8, any::<i64>()],
            prop_oneof![0u64..64, any::<u64>()],
        ), 0..6),
        data in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let tensors: Vec<Value> = inputs
            .iter()
            .map(|(name, datatype, rows, size)| json!({
                "name": INPUT_NAMES[*name], "datatype": datatype, "shape": [rows],
                "parameters": {"binary_data_size": size},
            }))
            .collect();
        let bytes = serde_json::to_vec(&json!({ "inputs": tensors })).unwrap();
        let (_, peak) = peak_allocated(|| {
            if let Ok(Object(request)) = parse_json::<Object<InferRequest>>(&bytes, MAX_DEPTH, MAX_ITEMS) {
                let _ = decode_with(&request.inputs, &data, MAX_ITEMS);
            }
        });
        within(bytes.len() + data.len(), 16, TENSOR_CONSTANT, peak)?;
    }

    #[test]
    fn csv_rows_never_panic_and_allocate_in_proportion(input in csv_input()) {
        let (_, peak) = peak_allocated(|| {
            if let Ok(csv) = PassengerCsv::new(input.as_slice(), DEFAULT_MAX_RECORD_BYTES) {
                for row in csv {
                    let _ = row;
                }
            }
        });
        within(input.len(), 16, 256 << 10, peak)?;
    }
}

/// Large inputs, where a decoder that sized anything by a number in its input would show.
#[test]
fn large_hostile_inputs_stay_within_the_bound() {
    // A shape of 10^15 rows with one value.
    let huge = serde_json::to_vec(&json!({"inputs": [{"name": "pclass", "datatype": "INT64",
        "shape": [1_000_000_000_000_000i64], "data": [1]}]}))
    .unwrap();
    let (result, peak) = peak_allocated(|| {
        let Object(request) =
            parse_json::<Object<InferRequest>>(&huge, MAX_DEPTH, MAX_ITEMS).unwrap();
        decode(&request.inputs, MAX_ITEMS).map(|rows| rows.len())
    });
    assert!(result.is_err());
    assert!(peak < 64 << 10, "{peak}");

    // A million items in one array: refused before parsing.
    let items = format!("{{\"instances\":[{}{{}}]}}", "{},".repeat(1_000_000));
    let (result, peak) =
        peak_allocated(|| parse_json::<Value>(items.as_bytes(), MAX_DEPTH, MAX_ITEMS).map(|_| ()));
    assert!(result.is_err());
    assert!(peak < 64 << 10, "{peak}");

    // A 16 MB quoted field that never closes.
    let mut csv =
        b"PassengerId,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n1,3,\"".to_vec();
    csv.resize(16 << 20, b'A');
    let (rows, peak) = peak_allocated(|| {
        PassengerCsv::new(csv.as_slice(), DEFAULT_MAX_RECORD_BYTES)
            .unwrap()
            .collect::<Vec<_>>()
    });
    assert!(rows[0].is_err());
    assert!(peak < 512 << 10, "{peak}");
}
