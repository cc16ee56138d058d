//! The predictor's answer as the scaler reads it: parsed or refused, never a panic; a
//! decision is applied only when neither stale nor in shadow, and reads back as sent.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prescale_policy::ServicesResponse;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = serde_json::from_slice::<ServicesResponse>(data) else { return };
    let now = chrono::Utc::now();
    for served in &response.services {
        if let Ok(replicas) = served.actionable(response.shadow, now, Duration::from_secs(300)) {
            assert!(!served.stale && !served.shadow && !response.shadow);
            assert_eq!(replicas, served.decision.desired_replicas);
        }
    }
    let text = serde_json::to_vec(&response).unwrap();
    let back: ServicesResponse = serde_json::from_slice(&text).unwrap();
    assert_eq!(back, response);
});
