//! Writing the benchmark files: one error type naming the file, for the CSV, JSON and SVG
//! outputs of `backtest` and `simulate`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A benchmark file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The file or its folder could not be written.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The plot could not be drawn.
    #[error("drawing {}: {message}", path.display())]
    Plot {
        /// The file.
        path: PathBuf,
        /// What the plotting library reported.
        message: String,
    },
}

/// Writes a text file line by line through `body`, naming the file in any error.
pub fn write_lines(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    let io = |source| OutputError::Io { path: path.to_owned(), source };
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    body(&mut w).and_then(|()| w.flush()).map_err(io)
}

/// Writes a value as pretty JSON.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), OutputError> {
    write_lines(path, |w| serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::other))
}

/// Creates an output folder.
pub fn create_dir(path: &Path) -> Result<(), OutputError> {
    std::fs::create_dir_all(path).map_err(|source| OutputError::Io { path: path.to_owned(), source })
}

/// A plotting error, named with its file.
pub fn plot_error(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> OutputError + '_ {
    move |e| OutputError::Plot { path: path.to_owned(), message: e.to_string() }
}
