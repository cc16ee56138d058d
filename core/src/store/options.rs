//! How to reach S3: plain settings, there with or without the S3 client (feature `s3`),
//! since configs name them either way.

use serde::{Deserialize, Serialize};

/// How to reach S3. Credentials are not here: they come from the standard AWS chain.
///
/// With the `cli` feature these are also the `--s3-endpoint`, `--s3-region` and
/// `--s3-path-style` flags every binary shares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields, default)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible server, such as `http://127.0.0.1:9000`;
    /// unset for AWS itself. Also read from `AWS_ENDPOINT_URL`.
    #[cfg_attr(feature = "cli", arg(long = "s3-endpoint", global = true, env = "PRESCALE_S3_ENDPOINT"))]
    pub endpoint: Option<String>,
    /// Region; unset means the AWS chain's region, else `us-east-1`.
    #[cfg_attr(feature = "cli", arg(long = "s3-region", global = true, env = "PRESCALE_S3_REGION"))]
    pub region: Option<String>,
    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`;
    /// most self-hosted S3 servers need this.
    #[cfg_attr(feature = "cli", arg(long = "s3-path-style", global = true, env = "PRESCALE_S3_PATH_STYLE"))]
    pub path_style: bool,
}

impl S3Options {
    /// These options (command-line flags) over `file`'s (a config's `[...s3]` section):
    /// a flag that is set wins, one left unset keeps the file's value.
    pub fn over(&self, file: &S3Options) -> S3Options {
        S3Options {
            endpoint: self.endpoint.clone().or_else(|| file.endpoint.clone()),
            region: self.region.clone().or_else(|| file.region.clone()),
            path_style: self.path_style || file.path_style,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_that_are_set_win_over_the_file() {
        let file = S3Options { endpoint: Some("http://file".into()), region: Some("eu".into()), path_style: true };
        let flags = S3Options { endpoint: Some("http://flag".into()), ..S3Options::default() };
        let merged = flags.over(&file);
        assert_eq!(merged.endpoint.as_deref(), Some("http://flag"));
        assert_eq!(merged.region.as_deref(), Some("eu"));
        assert!(merged.path_style);
        assert_eq!(S3Options::default().over(&file), file);
    }
}
