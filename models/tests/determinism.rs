//! Same seed, same model. In its own test binary: libtorch's random generator is
//! process-wide, so any other test creating a network concurrently would draw from it.

use chrono::{DateTime, Utc};
use prescale_core::StepGrid;
use prescale_models::forecaster::TransformerModel;
use prescale_models::series::{Series, Split};
use prescale_models::train::{Quiet, TrainConfig};

#[test]
fn training_is_deterministic_for_a_seed() {
    let start = DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap().with_timezone(&Utc);
    let values =
        (0..1500).map(|t| Some(50.0 + 30.0 * ((t % 96) as f64 / 15.3).sin() + ((t * 7919) % 13) as f64)).collect();
    let s = Series::new("synthetic", StepGrid::from_secs(60).unwrap(), start, values).unwrap();
    let config = TrainConfig::small(Some(96));
    let train = || TransformerModel::train(&s, Split::of(s.len()), 10, &config, &mut Quiet).unwrap().0;
    let (a, b) = (train(), train());
    let origins: Vec<usize> = (1300..1320).collect();
    assert_eq!(a.forecast(&s, &origins).unwrap().p50, b.forecast(&s, &origins).unwrap().p50);
    let other =
        TransformerModel::train(&s, Split::of(s.len()), 10, &TrainConfig { seed: 7, ..config.clone() }, &mut Quiet)
            .unwrap()
            .0;
    assert_ne!(
        a.forecast(&s, &origins).unwrap().p50,
        other.forecast(&s, &origins).unwrap().p50,
        "the seed must matter"
    );
}
