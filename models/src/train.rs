//! Training the transformer: the settings, the progress observer, the training loop with
//! early stopping, the choice of the base forecast it refines, and the p90 calibration on
//! validation. Inference lives in [`crate::forecaster`]; both build the same network.

use chrono::NaiveDate;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::Device;
use tch::nn::{self, OptimizerConfig};

use crate::base::{AdaptiveSmoothing, Base};
use crate::baselines::{Persistence, PointForecaster, Ridge, residual_q90, trajectory_mae};
use crate::preprocess::Preprocess;
use crate::series::{Series, Split, mean_observed};
use crate::transformer::{Inputs, Net, NetConfig, loss};
use crate::window::{Batch, WindowConfig, Windows};

use crate::forecaster::{FORECAST_BATCH, ModelError, ModelParams, P90Unit, TransformerModel, exog};

/// Everything that shapes training. Defaults fit a 2-core CPU in minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Context length in steps.
    pub context: usize,
    /// Width of the residual stream.
    pub d_model: i64,
    /// Attention heads.
    pub heads: i64,
    /// Transformer blocks.
    pub layers: usize,
    /// Feed-forward width.
    pub ff: i64,
    /// Dropout.
    pub dropout: f64,
    /// Windows per optimisation step.
    pub batch: usize,
    /// Windows drawn per epoch (at most all of them).
    pub samples_per_epoch: usize,
    /// Upper bound on epochs.
    pub max_epochs: usize,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Learning rate of AdamW.
    pub learning_rate: f64,
    /// Stop after this many seconds of training even if still improving.
    pub max_seconds: f64,
    /// Seed for initialisation and sampling: same seed, same model.
    pub seed: u64,
    /// Dates whose calendar feature says "holiday".
    pub holidays: Vec<NaiveDate>,
    /// Season length in steps; `None` means one day of steps.
    pub season_steps: Option<usize>,
    /// Share of the covariates' variance the kept principal components must explain
    /// (collector data only; 0 leaves the covariates out).
    pub pca_variance: f64,
    /// Refine a base forecast instead of the last value: a ridge on lags (fitted on the
    /// same fitting part) or adaptive smoothing, whichever beats persistence and the
    /// other on the validation part. The network learns what the base misses.
    #[serde(alias = "refine_ridge")]
    pub refine_base: bool,
    /// Give every token the phase of its time within the hour and the half hour, for
    /// demand with bursts at fixed minutes (cron jobs, batch pushes). Off by default: on
    /// the benchmark traces it helped Twitter's MAE but cost WorldCup 98 its p90 coverage.
    pub hour_phase: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            context: 64,
            d_model: 64,
            heads: 4,
            layers: 2,
            ff: 128,
            dropout: 0.1,
            batch: 256,
            samples_per_epoch: 32_768,
            max_epochs: 40,
            patience: 4,
            learning_rate: 1e-3,
            max_seconds: 600.0,
            seed: 42,
            holidays: Vec::new(),
            season_steps: None,
            pca_variance: 0.9,
            refine_base: true,
            hour_phase: false,
        }
    }
}

/// Why training settings are refused: the field, as in the TOML file, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("train config `{field}`: {reason}")]
pub struct InvalidTrainConfig {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Most windows per optimisation step or per epoch, and most epochs: far beyond what a
/// CPU trains, small enough that nothing sized from them exhausts memory.
const MAX_BATCH: usize = 65_536;
const MAX_SAMPLES: usize = 10_000_000;
const MAX_EPOCHS: usize = 100_000;

impl TrainConfig {
    /// Checks every field before anything is built from it, with the limits a stored
    /// model's parameters keep to ([`crate::forecaster::limits`]): zero heads would divide
    /// by zero, a huge context or width would abort on allocation, a zero season would
    /// divide by zero in the calendar features.
    pub fn validate(&self) -> Result<(), InvalidTrainConfig> {
        use crate::forecaster::limits;
        fn within<T: PartialOrd + std::fmt::Display + Copy>(
            field: &'static str,
            value: T,
            lo: T,
            hi: T,
        ) -> Result<(), InvalidTrainConfig> {
            if value < lo || value > hi {
                return Err(InvalidTrainConfig { field, reason: format!("{value} is outside {lo}..={hi}") });
            }
            Ok(())
        }
        let positive = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(InvalidTrainConfig { field, reason: format!("{v} is not a positive number") })
            }
        };
        within("context", self.context, 1, limits::CONTEXT)?;
        within("d_model", self.d_model, 1, limits::WIDTH)?;
        within("heads", self.heads, 1, limits::HEADS)?;
        if self.d_model % self.heads != 0 {
            return Err(InvalidTrainConfig {
                field: "heads",
                reason: format!("{} does not divide d_model {}", self.heads, self.d_model),
            });
        }
        within("layers", self.layers, 1, limits::LAYERS)?;
        within("ff", self.ff, 1, limits::WIDTH)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(InvalidTrainConfig { field: "dropout", reason: format!("{} is outside 0 to 1", self.dropout) });
        }
        within("batch", self.batch, 1, MAX_BATCH)?;
        within("samples_per_epoch", self.samples_per_epoch, 1, MAX_SAMPLES)?;
        within("max_epochs", self.max_epochs, 1, MAX_EPOCHS)?;
        positive("learning_rate", self.learning_rate)?;
        positive("max_seconds", self.max_seconds)?;
        within("holidays", self.holidays.len(), 0, limits::LIST)?;
        if let Some(season) = self.season_steps {
            within("season_steps", season, 1, limits::DAY)?;
        }
        if !(0.0..=1.0).contains(&self.pca_variance) {
            return Err(InvalidTrainConfig {
                field: "pca_variance",
                reason: format!("{} is outside 0 to 1", self.pca_variance),
            });
        }
        Ok(())
    }
}

impl TrainConfig {
    /// The network these settings build for windows shaped as `windows` are.
    pub(crate) fn net(&self, horizon: usize, windows: &Windows<'_>) -> NetConfig {
        NetConfig {
            context: self.context,
            horizon,
            context_features: windows.context_features(),
            horizon_features: windows.horizon_features(),
            d_model: self.d_model,
            heads: self.heads,
            layers: self.layers,
            ff: self.ff,
            dropout: self.dropout,
        }
    }
}

/// The settings of a small, fast model (a few seconds on CPU), as a `--train-config` file
/// holds them: what tests, demos and short histories train.
pub const SMALL: &str =
    "context = 16\nd_model = 16\nheads = 2\nlayers = 1\nff = 32\nbatch = 64\nsamples_per_epoch = 512\nmax_epochs = 3\n";

impl TrainConfig {
    /// The [`SMALL`] model; `season_steps` sets the season when the data's "day" is not a
    /// calendar day.
    pub fn small(season_steps: Option<usize>) -> Self {
        let small: Self = prescale_core::config::from_toml_str(SMALL).expect("SMALL holds valid settings");
        Self { season_steps, ..small }
    }
}

/// Writes [`SMALL`] as `small-train.toml` into `dir` and returns its path, for command-line
/// tests.
pub fn write_small_config(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join("small-train.toml");
    std::fs::write(&path, SMALL)?;
    Ok(path)
}

/// Progress reports from training, for progress bars and logs.
pub trait Observer {
    /// Training starts with this many optimisation steps per epoch.
    fn start(&mut self, _max_epochs: usize, _steps_per_epoch: usize) {}
    /// One optimisation step finished with this training loss.
    fn step(&mut self, _epoch: usize, _loss: f64) {}
    /// One epoch finished.
    fn epoch(&mut self, _epoch: usize, _train_loss: f64, _valid_loss: f64, _best: bool) {}
}

/// An observer that reports nothing.
#[derive(Debug, Default)]
pub struct Quiet;
impl Observer for Quiet {}

/// What training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Epochs run.
    pub epochs: usize,
    /// Best validation loss.
    pub best_valid_loss: f64,
    /// Windows seen in training.
    pub windows_seen: usize,
    /// Training wall time, seconds.
    pub seconds: f64,
    /// Whether early stopping ended training.
    pub early_stopped: bool,
}

const MAX_VALID_WINDOWS: usize = 4096;

impl TransformerModel {
    /// Trains on the fitting part of `series`, early-stops and calibrates on its
    /// validation part; never touches the test part.
    pub fn train(
        series: &Series,
        split: Split,
        horizon: usize,
        config: &TrainConfig,
        observer: &mut dyn Observer,
    ) -> Result<(Self, TrainSummary), ModelError> {
        config.validate()?;
        let started = std::time::Instant::now();
        tch::manual_seed(config.seed as i64);
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let device = Device::cuda_if_available();
        let day = config.season_steps.unwrap_or_else(|| series.grid.per_day());
        let window = WindowConfig { context: config.context, horizon, day, hour_phase: config.hour_phase };
        let train_mean = mean_observed(&series.values[..split.valid_start]).unwrap_or(0.0);
        let level_floor = (0.01 * train_mean).max(1e-6);
        let preprocess = match (&series.covariates, config.pca_variance > 0.0) {
            (Some(cov), true) => Preprocess::fit(cov, 0, split.valid_start, config.pca_variance)?,
            _ => None,
        };
        let plain = Windows::new(series, window, level_floor, &config.holidays);
        let fit = plain.usable_origins(0, split.valid_start.saturating_sub(horizon));
        let needed = config.batch.max(64);
        if fit.len() < needed {
            return Err(ModelError::TooShort {
                usable: fit.len(),
                needed,
                reason: format!(
                    "{} steps before validation, a {}-step context and a {horizon}-step horizon",
                    split.valid_start, config.context
                ),
            });
        }
        let mut valid = plain.usable_origins(split.valid_start, split.test_start.saturating_sub(horizon));
        let base = if config.refine_base { choose_base(series, day, split.valid_start, &valid, horizon) } else { None };
        let windows = plain.with_exog(exog(preprocess.as_ref(), series)?).with_base(base.as_ref());
        if valid.len() > MAX_VALID_WINDOWS {
            let stride = valid.len().div_ceil(MAX_VALID_WINDOWS);
            valid = valid.into_iter().step_by(stride).collect();
        }
        // Loss weights are levels over their typical size, so large windows count more,
        // as they do in the absolute error the product is judged on.
        let sample: Vec<f64> =
            fit.iter().step_by(fit.len().div_ceil(10_000)).filter_map(|&o| windows.level(o)).collect();
        let weight_scale = sample.iter().sum::<f64>() / sample.len() as f64;

        let params = ModelParams {
            net: config.net(horizon, &windows),
            window,
            level_floor,
            holidays: config.holidays.clone(),
            p90_shift: vec![0.0; horizon],
            p90_unit: P90Unit::Volatility,
            preprocess,
            base: base.clone(),
        };
        let mut model = Self::empty(params, device);
        let sources = [Source { windows, fit, valid: valid.clone(), weight_scale }];
        let mut summary = fit_network(&mut model, &sources, config, &mut rng, observer, started)?;
        model.params.p90_shift = model.calibrate(series, &valid)?;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok((model, summary))
    }

    /// The per-horizon p90 shift that makes 90% of validation actuals fall at or below
    /// p90 (conformalised quantile regression, one-sided).
    fn calibrate(&self, series: &Series, valid: &[usize]) -> Result<Vec<f64>, ModelError> {
        let (raw, units) = self.raw(series, valid, self.params.level_floor)?;
        Ok(residual_q90(series, valid, &raw.p90, &units))
    }
}

/// One series' windows in a training run: the origins it is fitted on and validated on,
/// and the typical level its loss weights are relative to.
pub(crate) struct Source<'a> {
    /// Its windows.
    pub windows: Windows<'a>,
    /// Origins of the fitting part.
    pub fit: Vec<usize>,
    /// Origins of the validation part (already thinned).
    pub valid: Vec<usize>,
    /// Its windows' typical level: loss weights are levels over it.
    pub weight_scale: f64,
}

/// The windows `rows` (source, origin) as model inputs: runs of one source are filled in
/// one call; loss weights are each window's level over its source's typical level.
fn inputs_of(sources: &[Source<'_>], rows: &[(usize, usize)], device: Device) -> Inputs {
    let first = &sources[rows[0].0].windows;
    let shapes =
        ((first.config().context, first.context_features()), (first.config().horizon, first.horizon_features()));
    let mut batch = Batch::zeros(rows.len(), shapes.0, shapes.1);
    let mut at = 0;
    for run in rows.chunk_by(|a, b| a.0 == b.0) {
        let origins: Vec<usize> = run.iter().map(|r| r.1).collect();
        sources[run[0].0].windows.fill(&origins, &mut batch, at);
        at += run.len();
    }
    if sources.len() == 1 {
        return Inputs::from_batch(&batch, sources[0].weight_scale, device);
    }
    let weights: Vec<f32> =
        rows.iter().zip(batch.level.iter()).map(|(r, l)| (f64::from(*l) / sources[r.0].weight_scale) as f32).collect();
    let mut input = Inputs::from_batch(&batch, 1.0, device);
    input.weight = tch::Tensor::from_slice(&weights).to_device(device);
    input
}

/// Trains `model`'s network on the fitting windows of every source, sampled together,
/// keeping the weights with the lowest loss over every source's validation windows
/// (early stopping); returns what training did. One source is a per-service model, many
/// a fleet model.
pub(crate) fn fit_network(
    model: &mut TransformerModel,
    sources: &[Source<'_>],
    config: &TrainConfig,
    rng: &mut SmallRng,
    observer: &mut dyn Observer,
    started: std::time::Instant,
) -> Result<TrainSummary, ModelError> {
    let device = model.vs.device();
    let best = TransformerModel::empty(model.params.clone(), device);
    let mut opt = nn::AdamW::default().wd(1e-4).build(&model.vs, config.learning_rate)?;
    let mut order: Vec<(usize, usize)> =
        sources.iter().enumerate().flat_map(|(i, s)| s.fit.iter().map(move |&o| (i, o))).collect();
    let per_epoch = config.samples_per_epoch.min(order.len());
    let steps_per_epoch = per_epoch.div_ceil(config.batch);
    observer.start(config.max_epochs, steps_per_epoch);
    let valid: Vec<(usize, usize)> =
        sources.iter().enumerate().flat_map(|(i, s)| s.valid.iter().map(move |&o| (i, o))).collect();
    let valid_inputs: Vec<Inputs> = valid.chunks(FORECAST_BATCH).map(|c| inputs_of(sources, c, device)).collect();
    let mut summary =
        TrainSummary { epochs: 0, best_valid_loss: f64::INFINITY, windows_seen: 0, seconds: 0.0, early_stopped: false };
    // The untrained network forecasts its anchor exactly (zero head): that is the bar
    // every epoch must beat on validation, so training never ends worse than its base.
    summary.best_valid_loss = validation_loss(&model.net, &valid_inputs);
    let mut best = best;
    best.vs.copy(&model.vs)?;
    let mut since_best = 0;
    for epoch in 1..=config.max_epochs {
        order.shuffle(rng);
        let (mut sum, mut n) = (0.0, 0);
        for chunk in order[..per_epoch].chunks(config.batch) {
            let input = inputs_of(sources, chunk, device);
            let l = loss(&model.net.forward(&input, true), &input);
            opt.backward_step_clip_norm(&l, 1.0);
            let l = l.double_value(&[]);
            sum += l;
            n += 1;
            summary.windows_seen += chunk.len();
            observer.step(epoch, l);
        }
        let valid_loss = validation_loss(&model.net, &valid_inputs);
        summary.epochs = epoch;
        let improved = valid_loss < summary.best_valid_loss;
        observer.epoch(epoch, sum / n.max(1) as f64, valid_loss, improved);
        if improved {
            summary.best_valid_loss = valid_loss;
            best.vs.copy(&model.vs)?;
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience {
                summary.early_stopped = true;
                break;
            }
        }
        if started.elapsed().as_secs_f64() > config.max_seconds {
            break;
        }
    }
    model.vs.copy(&best.vs)?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Mean loss over the validation batches, weighted by their sizes.
fn validation_loss(net: &Net, inputs: &[Inputs]) -> f64 {
    tch::no_grad(|| {
        let (s, c) = inputs.iter().fold((0.0, 0.0), |(s, c), input| {
            let w = input.target.size()[0] as f64;
            (s + loss(&net.forward(input, false), input).double_value(&[]) * w, c + w)
        });
        s / c.max(1.0)
    })
}

/// The base to refine: the ridge or adaptive smoothing, whichever has the lower MAE over
/// the whole horizon on validation origins, if it beats persistence there; otherwise the
/// network refines the last observed value.
fn choose_base(series: &Series, day: usize, fit_end: usize, valid: &[usize], horizon: usize) -> Option<Base> {
    let persistence_mae = trajectory_mae(series, valid, &Persistence.p50(series, valid, horizon));
    let candidates =
        [Base::Ridge(Ridge::fit(series, day, fit_end, valid, horizon)), Base::Smoothing(AdaptiveSmoothing::default())];
    candidates
        .into_iter()
        .map(|b| {
            let mae = trajectory_mae(series, valid, &b.p50(series, valid, horizon));
            tracing::info!(base = b.name(), mae, persistence_mae, "validation MAE of a base forecast");
            (b, mae)
        })
        .filter(|(_, mae)| *mae < persistence_mae)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(b, _)| b)
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use chrono::Utc;
    use prescale_core::StepGrid;
    use rand::Rng;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, failure_persistence: None, ..Default::default() })]

        /// Any value of a `--train-config` file replaced by anything, or an unknown key
        /// added: loaded and checked, or refused naming what was wrong, never a panic.
        #[test]
        fn any_edit_of_a_train_config_is_loaded_or_refused(
            text in prescale_testkit::props::edited_toml(include_str!("../../deploy/config/train.toml")),
        ) {
            let checked = prescale_core::config::from_toml_str::<TrainConfig>(&text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()));
            if let Err(e) = checked {
                proptest::prop_assert!(!e.trim().is_empty());
            }
        }
    }

    #[test]
    fn train_settings_out_of_bounds_are_refused_naming_the_field() {
        let refused = |toml: &str| {
            let c: TrainConfig = prescale_core::config::from_toml_str(toml).unwrap();
            c.validate().unwrap_err().to_string()
        };
        assert!(refused("heads = 0").contains("`heads`"));
        assert!(refused("d_model = 64\nheads = 5").contains("does not divide"));
        assert!(refused("context = 100000000").contains("`context`"));
        assert!(refused("season_steps = 0").contains("`season_steps`"));
        assert!(refused("learning_rate = -1.0").contains("`learning_rate`"));
        assert!(refused("dropout = 1.0").contains("`dropout`"));
        TrainConfig::default().validate().unwrap();
        TrainConfig::small(None).validate().unwrap();
        // Training itself refuses them before building anything.
        let s = series((0..400).map(|t| t as f64).collect());
        let bad = TrainConfig { heads: 0, ..TrainConfig::small(Some(48)) };
        let err = TransformerModel::train(&s, Split::of(400), 4, &bad, &mut Quiet).unwrap_err();
        assert!(matches!(err, ModelError::Config(_)), "{err}");
    }

    /// Seeded noise in [-1, 1).
    fn noise(n: usize) -> Vec<f64> {
        let mut rng = SmallRng::seed_from_u64(42);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn series(values: Vec<f64>) -> Series {
        Series::new("s", StepGrid::default(), Utc::now(), values.into_iter().map(Some).collect()).unwrap()
    }

    #[test]
    fn the_base_is_the_one_with_the_lowest_validation_error_below_persistence() {
        let (day, horizon, n) = (48, 10, 48 * 40);
        let valid: Vec<usize> = (1500..n - horizon).collect();
        let e = noise(n);
        let mae = |s: &Series, p: &Array2<f64>| trajectory_mae(s, &valid, p);
        // A daily shape under heavy noise: smoothing and ridge both beat the last value (it
        // carries the last step's noise ahead), the ridge by far, as it sees the value one
        // day back.
        let wave = |t: usize| 50.0 * (2.0 * std::f64::consts::PI * t as f64 / day as f64).sin();
        let seasonal = series((0..n).map(|t| 100.0 + wave(t) + 40.0 * e[t]).collect());
        let persistence = mae(&seasonal, &Persistence.p50(&seasonal, &valid, horizon));
        let smoothing = mae(&seasonal, &AdaptiveSmoothing::default().p50(&seasonal, &valid, horizon));
        let ridge = mae(&seasonal, &Ridge::fit(&seasonal, day, 1500, &valid, horizon).p50(&seasonal, &valid, horizon));
        assert!(ridge < smoothing && smoothing < persistence, "{ridge} {smoothing} {persistence}");
        let base = choose_base(&seasonal, day, 1500, &valid, horizon);
        assert!(matches!(base, Some(Base::Ridge(_))), "seasonal: {:?}", base.map(|b| b.name()));
        // Pure noise around a level: a base is chosen over the last value.
        let flat = series(e.iter().map(|x| 100.0 + 20.0 * x).collect());
        assert!(choose_base(&flat, day, 1500, &valid, horizon).is_some(), "noise: persistence kept");
        // A straight ramp: smoothing lags behind it, so it is never the choice.
        let ramp = series((0..n).map(|t| t as f64).collect());
        assert!(!matches!(choose_base(&ramp, day, 1500, &valid, horizon), Some(Base::Smoothing(_))));
    }
}
