//! A model manifest as a store hands it to the predictor: refused with the field named, or
//! accepted and then buildable (within limits) without a panic or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prescale_models::artifact::parse_manifest;
use prescale_models::forecaster::TransformerModel;

fuzz_target!(|data: &[u8]| {
    match parse_manifest("20260101T000000Z", data) {
        Ok(manifest) => {
            // Accepted parameters must build: this is what a reload does next.
            let model = TransformerModel::empty(manifest.params, tch::Device::Cpu);
            assert!(!model.vs.variables().is_empty());
        }
        Err(e) => assert!(e.to_string().contains("bad manifest"), "{e}"),
    }
});
