//! The settings file of each binary (collector, predictor, scaler, trainer): loaded and
//! checked, or refused naming what was wrong; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prescale_core::config::from_toml_str;
use prescale_core::store::S3Options;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let refusal = match which % 4 {
        0 => from_toml_str::<prescale_collector::CollectorConfig>(text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map(drop).map_err(|e| e.to_string())),
        1 => from_toml_str::<prescale_predictor::config::PredictorConfig>(text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.build(&S3Options::default()).map(drop).map_err(|e| e.to_string())),
        2 => from_toml_str::<prescale_scaler::run::RunConfig>(text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map_err(|e| e.to_string())),
        _ => from_toml_str::<prescale_models::train::TrainConfig>(text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map_err(|e| e.to_string())),
    };
    if let Err(reason) = refusal {
        assert!(!reason.trim().is_empty());
    }
});
