//! Progress bars for training: one bar per epoch with ETA and the running loss, and a
//! line per epoch with the validation loss.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prescale_models::train::Observer;

/// Draws training progress on stderr (hidden when stderr is not a terminal, where one
/// line per epoch is logged instead).
#[derive(Debug)]
pub struct Bars {
    bar: ProgressBar,
    loss: f64,
    steps: usize,
}

impl Bars {
    /// A hidden bar until training starts.
    pub fn new() -> Self {
        Self { bar: ProgressBar::hidden(), loss: 0.0, steps: 0 }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer for Bars {
    fn start(&mut self, max_epochs: usize, steps_per_epoch: usize) {
        let bar = ProgressBar::with_draw_target(
            Some((max_epochs * steps_per_epoch) as u64),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps, ETA {eta} (at most), {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix("training");
        self.bar = bar;
    }

    fn step(&mut self, epoch: usize, loss: f64) {
        self.steps += 1;
        self.loss = if self.steps == 1 { loss } else { 0.95 * self.loss + 0.05 * loss };
        self.bar.inc(1);
        if self.steps.is_multiple_of(10) {
            self.bar.set_message(format!("epoch {epoch}, loss {:.4}", self.loss));
        }
    }

    fn epoch(&mut self, epoch: usize, train_loss: f64, valid_loss: f64, best: bool) {
        let mark = if best { " (best)" } else { "" };
        let line = format!("epoch {epoch:>3}: train loss {train_loss:.4}, validation loss {valid_loss:.4}{mark}");
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
