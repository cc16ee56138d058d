//! Preprocessing of the multivariate features: standard scaling, then PCA.
//!
//! The collector records eleven features per service and step; besides demand itself
//! they are strongly correlated (CPU follows requests, memory follows replicas, latency
//! and in-flight requests move together). Feeding them raw would give the network many
//! redundant, differently scaled inputs. Instead they are standardised and projected on
//! their principal components, keeping as many as explain a configured share of the
//! variance (reported, and stored in the model manifest with every fitted constant).
//!
//! Both steps are fitted with `linfa` on training rows only and applied to any later
//! step with the stored constants, so the predictor computes exactly what training saw.
//! A step with any covariate missing gets zeros and an "observed" flag of 0: it is
//! masked, not passed off as the training mean.

use linfa::DatasetBase;
use linfa::traits::{Fit, Transformer};
use linfa_preprocessing::linear_scaling::LinearScaler;
use linfa_reduction::Pca;
use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

/// Covariates of a series: one row per step, one column per named feature, NaN where
/// missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Covariates {
    /// Feature names, one per column.
    pub names: Vec<String>,
    /// `[steps, names.len()]`, NaN where missing.
    pub values: Array2<f64>,
}

/// Fewest complete training rows worth fitting on.
const MIN_ROWS: usize = 32;

/// Fitted standard scaling and PCA of the covariates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// The covariates used, in order (constant ones are dropped).
    pub columns: Vec<String>,
    /// Standard scaling: `(x - offset) * scale` per column.
    pub offsets: Vec<f64>,
    /// Standard scaling factors (one over the standard deviation).
    pub scales: Vec<f64>,
    /// Mean of the scaled training rows, subtracted before projecting.
    pub pca_mean: Vec<f64>,
    /// Principal axes kept, one per row of `columns.len()` weights.
    pub components: Vec<Vec<f64>>,
    /// Share of the total variance explained by every component, kept or not, largest first.
    pub explained_variance_ratio: Vec<f64>,
    /// Rows the fit used.
    pub rows: usize,
}

/// Why the covariates could not be fitted.
#[derive(Debug, thiserror::Error)]
#[error("preprocessing covariates: {0}")]
pub struct PreprocessError(String);

impl PreprocessError {
    /// An error with this description.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl Preprocess {
    /// Fits on rows `[from, to)` of `cov`, keeping the fewest components whose explained
    /// variance reaches `variance` (0 to 1). `Ok(None)` when there is nothing worth
    /// fitting: fewer than two varying covariates or too few complete rows.
    pub fn fit(cov: &Covariates, from: usize, to: usize, variance: f64) -> Result<Option<Self>, PreprocessError> {
        if !(0.0..=1.0).contains(&variance) || variance.is_nan() {
            return Err(PreprocessError(format!("the explained-variance target {variance} is not between 0 and 1")));
        }
        let to = to.min(cov.values.nrows());
        let span = cov.values.slice(ndarray::s![from..to, ..]);
        // Columns observed in most training rows and not constant: a feature the
        // collector's catalog cannot measure here (no limits set, say) is left out rather
        // than discarding every row, and a constant carries nothing and breaks scaling.
        let keep: Vec<usize> = (0..span.ncols())
            .filter(|&j| {
                let observed: Vec<f64> = span.column(j).iter().copied().filter(|v| v.is_finite()).collect();
                let first = observed.first().copied().unwrap_or(0.0);
                2 * observed.len() >= span.nrows()
                    && observed.iter().any(|v| (v - first).abs() > 1e-12 * first.abs().max(1.0))
            })
            .collect();
        if keep.len() < 2 {
            return Ok(None);
        }
        let rows: Vec<usize> = (from..to).filter(|&i| keep.iter().all(|&j| cov.values[[i, j]].is_finite())).collect();
        if rows.len() < MIN_ROWS {
            return Ok(None);
        }
        let x = cov.values.select(Axis(0), &rows).select(Axis(1), &keep);
        let scaler = LinearScaler::standard()
            .fit(&DatasetBase::from(x.clone()))
            .map_err(|e| PreprocessError(format!("standard scaling: {e}")))?;
        let scaled = scaler.transform(x);
        let d = keep.len();
        let pca = Pca::params(d)
            .fit(&DatasetBase::from(scaled))
            .map_err(|e| PreprocessError(format!("PCA of {d} columns: {e}")))?;
        // All d components are fitted, so these ratios are shares of the total variance.
        let ratio = pca.explained_variance_ratio();
        let mut cumulative = 0.0;
        let mut k = 0;
        for r in ratio.iter() {
            k += 1;
            cumulative += r;
            if cumulative >= variance - 1e-12 {
                break;
            }
        }
        Ok(Some(Self {
            columns: keep.iter().map(|&j| cov.names[j].clone()).collect(),
            offsets: scaler.offsets().to_vec(),
            scales: scaler.scales().to_vec(),
            pca_mean: pca.mean().to_vec(),
            components: pca.components().outer_iter().take(k).map(|r| r.to_vec()).collect(),
            explained_variance_ratio: ratio.to_vec(),
            rows: rows.len(),
        }))
    }

    /// Components kept.
    pub fn dims(&self) -> usize {
        self.components.len()
    }

    /// Share of the variance the kept components explain.
    pub fn explained(&self) -> f64 {
        self.explained_variance_ratio.iter().take(self.dims()).sum()
    }

    /// Features this adds to a context token: the components and an observed flag.
    pub fn width(&self) -> usize {
        self.dims() + 1
    }

    /// Projects every step of `cov`: `[steps, width()]`, the components then a flag that is
    /// 1 when every used covariate was observed (else the row is all zeros).
    pub fn transform(&self, cov: &Covariates) -> Result<Array2<f32>, PreprocessError> {
        let idx: Vec<usize> = self
            .columns
            .iter()
            .map(|c| {
                cov.names.iter().position(|n| n == c).ok_or_else(|| {
                    PreprocessError(format!("the data lacks the covariate `{c}` the model was fitted on"))
                })
            })
            .collect::<Result<_, _>>()?;
        let offsets = Array1::from(self.offsets.clone());
        let scales = Array1::from(self.scales.clone());
        let mean = Array1::from(self.pca_mean.clone());
        let comps = Array2::from_shape_fn((self.dims(), self.columns.len()), |(i, j)| self.components[i][j]);
        let mut out = Array2::zeros((cov.values.nrows(), self.width()));
        for (t, row) in cov.values.outer_iter().enumerate() {
            let x: Array1<f64> = idx.iter().map(|&j| row[j]).collect();
            if x.iter().all(|v| v.is_finite()) {
                let z = (&x - &offsets) * &scales - &mean;
                for (k, v) in comps.dot(&z).iter().enumerate() {
                    out[[t, k]] = *v as f32;
                }
                out[[t, self.dims()]] = 1.0;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three covariates driven by one hidden signal plus a little noise, a constant and one
    /// never measured.
    fn covariates(n: usize) -> Covariates {
        let mut values = Array2::zeros((n, 5));
        for t in 0..n {
            let s = (t as f64 / 7.0).sin() * 10.0 + 50.0;
            let noise = ((t * 7919) % 13) as f64 / 13.0 - 0.5;
            values[[t, 0]] = 0.02 * s + 0.01 * noise;
            values[[t, 1]] = 1e6 * s + 1e4 * noise;
            values[[t, 2]] = 3.0;
            values[[t, 3]] = 0.5 * s - 0.2 * noise;
            values[[t, 4]] = f64::NAN;
        }
        values[[5, 1]] = f64::NAN;
        Covariates { names: ["cpu", "memory", "limit", "latency", "unmeasured"].map(String::from).to_vec(), values }
    }

    #[test]
    fn keeps_the_components_that_explain_the_variance_and_masks_missing_rows() {
        let cov = covariates(200);
        let p = Preprocess::fit(&cov, 0, 150, 0.9).unwrap().expect("enough rows");
        assert_eq!(p.columns, vec!["cpu", "memory", "latency"], "constant and unmeasured columns are dropped");
        assert_eq!(p.dims(), 1, "one hidden signal: {:?}", p.explained_variance_ratio);
        assert!(p.explained() > 0.9 && p.explained() <= 1.0 + 1e-9);
        assert!((p.explained_variance_ratio.iter().sum::<f64>() - 1.0).abs() < 1e-6);
        assert_eq!(p.rows, 149, "the row with a missing value is not fitted on");
        let z = p.transform(&cov).unwrap();
        assert_eq!(z.dim(), (200, 2));
        assert_eq!((z[[5, 0]], z[[5, 1]]), (0.0, 0.0), "missing row masked");
        assert_eq!(z[[6, 1]], 1.0);
        // Fitted on training rows only: the scaled training component has mean ~0.
        let m: f32 = (0..150).filter(|&t| t != 5).map(|t| z[[t, 0]]).sum::<f32>() / 149.0;
        assert!(m.abs() < 1e-3, "{m}");
    }

    #[test]
    fn too_little_or_unknown_data_is_reported() {
        let cov = covariates(20);
        assert!(Preprocess::fit(&cov, 0, 20, 0.9).unwrap().is_none());
        assert!(Preprocess::fit(&cov, 0, 20, 1.5).is_err());
        let p = Preprocess::fit(&covariates(100), 0, 100, 0.9).unwrap().unwrap();
        let other = Covariates { names: vec!["x".into()], values: Array2::zeros((3, 1)) };
        let err = p.transform(&other).unwrap_err().to_string();
        assert!(err.contains("`cpu`"), "{err}");
    }
}
