//! A weights file as a store hands it to the predictor: its safetensors header checked in
//! memory against a network's variables, refused with a reason or accepted only when every
//! tensor matches.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prescale_models::artifact::check_weights;

/// A small network's variables: name to shape.
fn expected() -> &'static BTreeMap<String, Vec<i64>> {
    static EXPECTED: OnceLock<BTreeMap<String, Vec<i64>>> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        BTreeMap::from([
            ("embed.weight".to_owned(), vec![16, 4]),
            ("embed.bias".to_owned(), vec![16]),
            ("head.weight".to_owned(), vec![2, 16]),
        ])
    })
}

fuzz_target!(|data: &[u8]| {
    if check_weights(expected(), data).is_ok() {
        // Accepted: it must be a readable file holding exactly those tensors.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        std::fs::write(&path, data).unwrap();
        let read = tch::Tensor::read_safetensors(&path).expect("an accepted file reads");
        assert_eq!(read.len(), expected().len());
    }
});
