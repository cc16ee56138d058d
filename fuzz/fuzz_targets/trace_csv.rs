//! A trace CSV (`timestamp,requests`) as a data scientist hands it to the trainer: a series
//! or an error naming the line, never a panic or a series past the step limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prescale_models::series::{MAX_TRACE_STEPS, Series};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Series::parse_trace_csv("fuzz.csv", text) {
        Ok(series) => assert!(series.values.len() <= MAX_TRACE_STEPS),
        Err(e) => assert!(e.to_string().contains("fuzz.csv"), "the error names its file: {e}"),
    }
});
