//! The forecaster: a decoder-only transformer over context and horizon tokens.
//!
//! The sequence is the `context` past steps followed by one query token per horizon
//! step. Causal self-attention lets each horizon token read the whole context and the
//! horizon tokens before it, never the future. A linear head on each horizon token gives
//! the median (as a correction to the anchor: a base forecast or the last observed value)
//! and a non-negative gap to the 90th percentile, both in units of the window's level.
//! Training minimises the pinball loss at 0.5, weighted by the window's level so that it
//! tracks the absolute error the product is judged on, plus the pinball loss at 0.9 with
//! every window alike, as coverage counts them: weighted by level, the band would be
//! learnt from busy periods and be too narrow in quiet, noisier ones.
//!
//! [`Net::new`] builds the same graph for training and inference under stable variable
//! names (`ctx_in`, `hor_in`, `pos`, `blocks/N/...`, `head`), so checkpoints load.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::window::Batch;

/// Sizes of the network. `Copy`, stored in the model manifest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Context tokens.
    pub context: usize,
    /// Horizon tokens.
    pub horizon: usize,
    /// Features per context token.
    pub context_features: usize,
    /// Features per horizon token.
    pub horizon_features: usize,
    /// Width of the residual stream.
    pub d_model: i64,
    /// Attention heads.
    pub heads: i64,
    /// Transformer blocks.
    pub layers: usize,
    /// Width of the feed-forward layer.
    pub ff: i64,
    /// Dropout during training.
    pub dropout: f64,
}

#[derive(Debug)]
struct Block {
    ln1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    ln2: nn::LayerNorm,
    fc: nn::Linear,
    out: nn::Linear,
    heads: i64,
    dropout: f64,
}

impl Block {
    fn new(p: nn::Path, cfg: &NetConfig) -> Self {
        let d = cfg.d_model;
        Self {
            ln1: nn::layer_norm(&p / "ln1", vec![d], Default::default()),
            qkv: nn::linear(&p / "qkv", d, 3 * d, Default::default()),
            proj: nn::linear(&p / "proj", d, d, Default::default()),
            ln2: nn::layer_norm(&p / "ln2", vec![d], Default::default()),
            fc: nn::linear(&p / "fc", d, cfg.ff, Default::default()),
            out: nn::linear(&p / "out", cfg.ff, d, Default::default()),
            heads: cfg.heads,
            dropout: cfg.dropout,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, t, d) = x.size3().expect("[batch, tokens, d_model]");
        let hd = d / self.heads;
        let qkv = self.qkv.forward(&self.ln1.forward(x));
        let split = |i: i64| qkv.narrow(2, i * d, d).view([b, t, self.heads, hd]).transpose(1, 2);
        let p = if train { self.dropout } else { 0.0 };
        let att =
            Tensor::scaled_dot_product_attention::<Tensor>(&split(0), &split(1), &split(2), None, p, true, None, false);
        let att = att.transpose(1, 2).contiguous().view([b, t, d]);
        let x = x + self.proj.forward(&att).dropout(p, train);
        let h = self.out.forward(&self.fc.forward(&self.ln2.forward(&x)).gelu("none")).dropout(p, train);
        x + h
    }
}

/// The network.
#[derive(Debug)]
pub struct Net {
    ctx_in: nn::Linear,
    hor_in: nn::Linear,
    pos: Tensor,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    head: nn::Linear,
    cfg: NetConfig,
}

/// Network outputs in units of the window level, `[B, horizon]` each.
#[derive(Debug)]
pub struct Output {
    /// Median.
    pub p50: Tensor,
    /// 90th percentile (never below the median).
    pub p90: Tensor,
}

impl Net {
    /// Builds the network under `p`.
    pub fn new(p: &nn::Path, cfg: NetConfig) -> Self {
        let tokens = (cfg.context + cfg.horizon) as i64;
        Self {
            ctx_in: nn::linear(p / "ctx_in", cfg.context_features as i64, cfg.d_model, Default::default()),
            hor_in: nn::linear(p / "hor_in", cfg.horizon_features as i64, cfg.d_model, Default::default()),
            pos: p.var("pos", &[tokens, cfg.d_model], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            blocks: (0..cfg.layers).map(|i| Block::new(p / "blocks" / i, &cfg)).collect(),
            ln_f: nn::layer_norm(p / "ln_f", vec![cfg.d_model], Default::default()),
            // Zero-initialised, so an untrained network forecasts exactly its anchor (the
            // base forecast) and training only ever learns corrections to it.
            head: nn::linear(
                p / "head",
                cfg.d_model,
                2,
                nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true },
            ),
            cfg,
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> NetConfig {
        self.cfg
    }

    /// Forward pass; `train` enables dropout.
    pub fn forward(&self, input: &Inputs, train: bool) -> Output {
        let ctx = self.ctx_in.forward(&input.context);
        let hor = self.hor_in.forward(&input.horizon);
        let mut x = Tensor::cat(&[ctx, hor], 1) + &self.pos;
        x = x.dropout(self.cfg.dropout, train);
        for block in &self.blocks {
            x = block.forward(&x, train);
        }
        let out = self.head.forward(&self.ln_f.forward(&x.narrow(1, self.cfg.context as i64, self.cfg.horizon as i64)));
        let p50 = out.select(2, 0) + &input.anchor;
        let p90 = &p50 + out.select(2, 1).softplus();
        Output { p50, p90 }
    }
}

/// A batch as tensors on a device.
#[derive(Debug)]
pub struct Inputs {
    /// `[B, context, F]`.
    pub context: Tensor,
    /// `[B, horizon, F]`.
    pub horizon: Tensor,
    /// `[B, horizon]`.
    pub anchor: Tensor,
    /// `[B, horizon]`.
    pub target: Tensor,
    /// `[B, horizon]`.
    pub target_mask: Tensor,
    /// Loss weight of each window, `[B]`.
    pub weight: Tensor,
}

fn tensor<D: ndarray::Dimension>(a: &ndarray::Array<f32, D>, device: Device) -> Tensor {
    let shape: Vec<i64> = a.shape().iter().map(|&s| s as i64).collect();
    let data: Vec<f32> = a.iter().copied().collect();
    Tensor::from_slice(&data).view(shape.as_slice()).to_device(device)
}

impl Inputs {
    /// Moves a batch to `device`; `weight_scale` divides the levels into loss weights.
    pub fn from_batch(batch: &Batch, weight_scale: f64, device: Device) -> Self {
        Self {
            context: tensor(&batch.context, device),
            horizon: tensor(&batch.horizon, device),
            anchor: tensor(&batch.anchor, device),
            target: tensor(&batch.target, device),
            target_mask: tensor(&batch.target_mask, device),
            weight: tensor(&batch.level, device) / weight_scale,
        }
    }
}

/// Pinball loss over observed targets: at 0.5 weighted by level, at 0.9 unweighted.
pub fn loss(out: &Output, input: &Inputs) -> Tensor {
    let pin = |pred: &Tensor, q: f64| {
        let d = &input.target - pred;
        d.maximum(&Tensor::zeros_like(&d)) * q + (-&d).maximum(&Tensor::zeros_like(&d)) * (1.0 - q)
    };
    let mean = |l: Tensor, w: &Tensor| (l * w).sum(Kind::Float) / (w.sum(Kind::Float) + 1e-8);
    let mask = &input.target_mask;
    mean(pin(&out.p50, 0.5), &(input.weight.unsqueeze(1) * mask)) + mean(pin(&out.p90, 0.9), mask)
}
