//! Where data and models live: `s3://bucket/prefix`, `file:///abs/path` or a plain path.
//!
//! A [`Location`] is parsed once, from config or a flag, and refuses anything it could
//! not store to with an error naming the problem, so a typo fails at start instead of
//! after the first ten minutes of collection.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a location string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Nothing was given.
    #[error("location is empty; expected s3://bucket/prefix, file:///path or a path")]
    Empty,
    /// A scheme other than `s3` or `file`.
    #[error("location {input:?} has unsupported scheme {scheme:?}; expected s3://, file:// or a plain path")]
    UnsupportedScheme {
        /// The whole location as given.
        input: String,
        /// The scheme found before `://`.
        scheme: String,
    },
    /// `s3://` without a bucket, or a bucket name S3 would refuse.
    #[error("location {input:?} has invalid bucket {bucket:?}: {reason}")]
    InvalidBucket {
        /// The whole location as given.
        input: String,
        /// The bucket part.
        bucket: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `file://` URL that is not absolute (`file://host/...` is not supported).
    #[error("location {input:?}: a file:// URL needs an absolute path, as in file:///var/lib/prescale")]
    RelativeFileUrl {
        /// The whole location as given.
        input: String,
    },
    /// A prefix with an empty, `.` or `..` segment, which no store can represent.
    #[error("location {input:?} has an invalid prefix segment {segment:?}")]
    InvalidPrefix {
        /// The whole location as given.
        input: String,
        /// The offending segment.
        segment: String,
    },
}

/// A place to keep objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Location {
    /// A folder on the local file system.
    Local(PathBuf),
    /// A bucket and a key prefix (no leading or trailing `/`; empty for the bucket root).
    S3 {
        /// The bucket name.
        bucket: String,
        /// The key prefix below which everything is stored.
        prefix: String,
    },
}

impl Location {
    /// The same store, `sub` deeper (`s3://b/p` + `models` = `s3://b/p/models`).
    pub fn join(&self, sub: &str) -> Location {
        let sub = sub.trim_matches('/');
        match self {
            Location::Local(path) => Location::Local(path.join(sub)),
            Location::S3 { bucket, prefix } => Location::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() { sub.to_owned() } else { format!("{prefix}/{sub}") },
            },
        }
    }
}

impl FromStr for Location {
    type Err = LocationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(LocationError::Empty);
        }
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(trimmed)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "s3" => parse_s3(input, rest),
            "file" => {
                if !rest.starts_with('/') {
                    return Err(LocationError::RelativeFileUrl { input: input.to_owned() });
                }
                Ok(Location::Local(PathBuf::from(rest)))
            }
            _ => Err(LocationError::UnsupportedScheme { input: input.to_owned(), scheme: scheme.to_owned() }),
        }
    }
}

fn parse_s3(input: &str, rest: &str) -> Result<Location, LocationError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let invalid = |reason| LocationError::InvalidBucket { input: input.to_owned(), bucket: bucket.to_owned(), reason };
    if bucket.is_empty() {
        return Err(invalid("the bucket name is missing"));
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err(invalid("bucket names are 3 to 63 characters long"));
    }
    if !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') {
        return Err(invalid("bucket names use only lower-case letters, digits, '-' and '.'"));
    }
    let edges = [bucket.as_bytes()[0], bucket.as_bytes()[bucket.len() - 1]];
    if !edges.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid("bucket names start and end with a letter or digit"));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty()
        && let Some(segment) = prefix.split('/').find(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(LocationError::InvalidPrefix { input: input.to_owned(), segment: segment.to_owned() });
    }
    Ok(Location::S3 { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
}

impl TryFrom<String> for Location {
    type Error = LocationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Location> for String {
    fn from(l: Location) -> Self {
        l.to_string()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> Location {
        Location::S3 { bucket: bucket.into(), prefix: prefix.into() }
    }

    #[test]
    fn parses_each_form() {
        assert_eq!("s3://data/metrics/".parse::<Location>().unwrap(), s3("data", "metrics"));
        assert_eq!("s3://data".parse::<Location>().unwrap(), s3("data", ""));
        assert_eq!("s3://my.bucket-1/a/b".parse::<Location>().unwrap(), s3("my.bucket-1", "a/b"));
        assert_eq!("file:///var/lib/p".parse::<Location>().unwrap(), Location::Local("/var/lib/p".into()));
        assert_eq!("./data".parse::<Location>().unwrap(), Location::Local("./data".into()));
    }

    #[test]
    fn display_round_trips() {
        for s in ["s3://data/metrics", "s3://data", "/var/lib/p", "rel/dir"] {
            assert_eq!(s.parse::<Location>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn malformed_locations_name_the_problem() {
        let err = |s: &str| s.parse::<Location>().unwrap_err().to_string();
        assert!(err("").contains("empty"));
        assert!(err("gs://bucket/x").contains("unsupported scheme \"gs\""));
        assert!(err("s3://").contains("bucket name is missing"));
        assert!(err("s3://My_Bucket/x").contains("\"My_Bucket\""));
        assert!(err("s3://ab").contains("3 to 63"));
        assert!(err("s3://-ab/x").contains("start and end"));
        assert!(err("s3://bucket/a//b").contains("segment \"\""));
        assert!(err("s3://bucket/a/../b").contains("segment \"..\""));
        assert!(err("file://relative/x").contains("absolute path"));
    }

    #[test]
    fn join_nests() {
        assert_eq!(s3("b", "").join("models"), s3("b", "models"));
        assert_eq!(s3("b", "p").join("/models/"), s3("b", "p/models"));
        assert_eq!(Location::Local("/d".into()).join("m"), Location::Local("/d/m".into()));
    }
}
