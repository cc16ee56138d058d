//! Configuration: a TOML file, overridden by environment variables, into serde structs.
//!
//! Every component describes its settings as a struct with documented fields, defaults
//! and `#[serde(deny_unknown_fields)]`, and loads it with [`load`]. An environment
//! variable `PRESCALE__SECTION__FIELD` overrides `[section] field` of the file (the double
//! underscore keeps these apart from flag variables such as `PRESCALE_CONFIG`). Any error
//! names the field and where its value came from; binaries exit with [`EXIT_CONFIG`].

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Location;
use crate::store::S3Options;

/// Exit status for a configuration error (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: u8 = 64;

/// Prefix of environment overrides: `PRESCALE__STORE__LOCATION=s3://b/p`.
pub const ENV_PREFIX: &str = "PRESCALE__";

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The named config file does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A value is missing, unknown, or of the wrong form; the message names the field
    /// and its source.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Loads `T` from `file` (when given) and the `PRESCALE__*` environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_with_env(file, Env::prefixed(ENV_PREFIX).split("__"))
}

/// Loads `T` from one TOML file alone, without environment overrides.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::MissingFile(path.to_owned()));
    }
    Figment::from(Toml::file_exact(path)).extract().map_err(invalid)
}

/// Loads `T` from a TOML string alone, for tests and built-in defaults.
pub fn from_toml_str<T: DeserializeOwned>(toml: &str) -> Result<T, ConfigError> {
    Figment::from(Toml::string(toml)).extract().map_err(invalid)
}

/// Why a binary could not start from its settings; every case exits with [`EXIT_CONFIG`].
#[derive(Debug, thiserror::Error)]
pub enum StartError<E: std::error::Error + 'static> {
    /// The file or the environment did not parse.
    #[error(transparent)]
    Load(#[from] ConfigError),
    /// The settings parsed but cannot be run (the component's own check).
    #[error(transparent)]
    Build(E),
    /// The log filter is invalid.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

/// How every long-running binary starts: load `C` from `file` and the environment, build
/// what it runs from it, and set up logging from the result's [`TelemetryConfig`]. Any
/// error names its field; the binary prints it and exits with [`EXIT_CONFIG`].
pub fn start<C: DeserializeOwned, T, E: std::error::Error + 'static>(
    file: Option<&Path>,
    build: impl FnOnce(C) -> Result<T, E>,
    telemetry: impl FnOnce(&T) -> &TelemetryConfig,
) -> Result<T, StartError<E>> {
    let built = build(load::<C>(file)?).map_err(StartError::Build)?;
    crate::telemetry::init(telemetry(&built))?;
    Ok(built)
}

/// The flags every long-running binary shares: its settings file and the S3 options.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Settings (TOML); `PRESCALE__SECTION__FIELD` variables override it.
    #[arg(long, global = true, env = "PRESCALE_CONFIG")]
    pub config: Option<PathBuf>,
    /// How to reach S3 (flags win over the file's `s3` sections).
    #[command(flatten)]
    pub s3: S3Options,
}

fn load_with_env<T: DeserializeOwned>(file: Option<&Path>, env: Env) -> Result<T, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::MissingFile(path.to_owned()));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment.merge(env).extract().map_err(invalid)
}

fn invalid(err: figment::Error) -> ConfigError {
    // figment may collect several errors; report them all, each with its key and source.
    ConfigError::Invalid(err.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
}

/// A setting that parsed but that the component cannot run with, named as the file
/// names it (`services[1].service`, `tls.cert`, `chunk_steps`); binaries exit with
/// [`EXIT_CONFIG`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The setting.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// The error of one field.
    pub fn new(field: impl Into<String>, reason: impl ToString) -> Self {
        Self { field: field.into(), reason: reason.to_string() }
    }
}

/// Where a component keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `s3://bucket/prefix`, `file:///path` or a plain path.
    pub location: Location,
    /// How to reach S3 when `location` is an `s3://` location.
    #[serde(default)]
    pub s3: S3Options,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `tracing` filter directives, such as `info,prescale_collector=debug`;
    /// `RUST_LOG` wins when set.
    pub log: String,
    /// One JSON object per line instead of human-readable lines.
    pub json: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log: "info".into(), json: false }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::StepGrid;

    /// A config shaped like a component's.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        step: StepGrid,
        store: StoreConfig,
        #[serde(default)]
        telemetry: TelemetryConfig,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn no_env() -> Env {
        Env::prefixed("PRESCALE_TEST_UNSET_PREFIX__").split("__")
    }

    #[test]
    fn reads_file_with_defaults() {
        let f = file("step = \"1s\"\n[store]\nlocation = \"s3://data/metrics\"\n[store.s3]\npath_style = true\n");
        let cfg: Sample = load_with_env(Some(f.path()), no_env()).unwrap();
        assert_eq!(cfg.step.seconds(), 1.0);
        assert_eq!(cfg.store.location.to_string(), "s3://data/metrics");
        assert!(cfg.store.s3.path_style);
        assert_eq!(cfg.telemetry, TelemetryConfig::default());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
    fn environment_overrides_the_file() {
        let f = file("[store]\nlocation = \"/tmp/a\"\n");
        figment::Jail::expect_with(|jail| {
            jail.set_env("PRESCALE__STORE__LOCATION", "s3://other/p");
            jail.set_env("PRESCALE__TELEMETRY__JSON", "true");
            let cfg: Sample = load(Some(f.path())).map_err(|e| e.to_string())?;
            assert_eq!(cfg.store.location.to_string(), "s3://other/p");
            assert!(cfg.telemetry.json);
            Ok(())
        });
    }

    #[test]
    fn unknown_field_is_named() {
        let f = file("[store]\nlocation = \"/tmp/a\"\nlocaton = \"typo\"\n");
        let err = load_with_env::<Sample>(Some(f.path()), no_env()).unwrap_err().to_string();
        assert!(err.contains("locaton"), "{err}");
        assert!(err.contains("store"), "{err}");
    }

    #[test]
    fn bad_values_are_named_with_their_field() {
        let err = from_toml_str::<Sample>("[store]\nlocation = \"gs://x/y\"\n").unwrap_err().to_string();
        assert!(err.contains("store.location"), "{err}");
        assert!(err.contains("unsupported scheme"), "{err}");
        let err = from_toml_str::<Sample>("step = \"0s\"\n[store]\nlocation = \"/a\"\n").unwrap_err().to_string();
        assert!(err.contains("step"), "{err}");
        let err = from_toml_str::<Sample>("").unwrap_err().to_string();
        assert!(err.contains("store"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/prescale.toml"))).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/prescale.toml"), "{err}");
    }
}
