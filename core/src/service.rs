//! Service identity: a Kubernetes namespace and a workload name.
//!
//! Both parts are validated as DNS-1123 labels once, at the edge (config, query results,
//! API paths), so that everything downstream can use them as Prometheus label values,
//! object-store key parts and metric labels without escaping.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Errors raised when a namespace or service name is not a valid DNS-1123 label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceIdError {
    /// The namespace or name is empty.
    #[error("{what} is empty")]
    Empty {
        /// `namespace` or `service`.
        what: &'static str,
    },
    /// The namespace or name is longer than the 63 characters Kubernetes allows.
    #[error("{what} {value:?} is longer than 63 characters")]
    TooLong {
        /// `namespace` or `service`.
        what: &'static str,
        /// The rejected value.
        value: String,
    },
    /// The namespace or name contains something other than `a-z`, `0-9` and inner `-`.
    #[error("{what} {value:?} must be lower-case letters, digits and inner '-' (a DNS-1123 label)")]
    BadCharacters {
        /// `namespace` or `service`.
        what: &'static str,
        /// The rejected value.
        value: String,
    },
}

/// A scaled workload: its namespace and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawServiceId")]
pub struct ServiceId {
    namespace: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceId {
    namespace: String,
    name: String,
}

impl TryFrom<RawServiceId> for ServiceId {
    type Error = ServiceIdError;
    fn try_from(raw: RawServiceId) -> Result<Self, Self::Error> {
        Self::new(raw.namespace, raw.name)
    }
}

impl ServiceId {
    /// Validates both parts and builds the id.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Result<Self, ServiceIdError> {
        let namespace = namespace.into();
        let name = name.into();
        validate_label("namespace", &namespace)?;
        validate_label("service", &name)?;
        Ok(Self { namespace, name })
    }

    /// The Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The workload (Deployment) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a user's selector names this service: `namespace/name`, or just `name`
    /// (any namespace), as command lines accept them.
    pub fn matches(&self, selector: &str) -> bool {
        match selector.split_once('/') {
            Some((ns, name)) => self.namespace == ns && self.name == name,
            None => self.name == selector,
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Checks that `value` is a DNS-1123 label; `what` names it in the error.
pub fn validate_label(what: &'static str, value: &str) -> Result<(), ServiceIdError> {
    if value.is_empty() {
        return Err(ServiceIdError::Empty { what });
    }
    if value.len() > 63 {
        return Err(ServiceIdError::TooLong { what, value: value.to_owned() });
    }
    let ok_chars = value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || value.starts_with('-') || value.ends_with('-') {
        return Err(ServiceIdError::BadCharacters { what, value: value.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        let id = ServiceId::new("shop", "order-v2").unwrap();
        assert_eq!(id.to_string(), "shop/order-v2");
    }

    #[test]
    fn rejects_bad_labels_naming_the_part() {
        assert_eq!(ServiceId::new("", "order").unwrap_err(), ServiceIdError::Empty { what: "namespace" });
        let err = ServiceId::new("shop", "Order").unwrap_err().to_string();
        assert!(err.contains("service \"Order\""), "{err}");
        assert!(ServiceId::new("shop", "-order").is_err());
        assert!(ServiceId::new("shop", "a".repeat(64)).is_err());
        assert!(ServiceId::new("shop", "or/der").is_err());
    }

    #[test]
    fn deserialising_validates() {
        let err = serde_json::from_str::<ServiceId>(r#"{"namespace":"shop","name":"A B"}"#).unwrap_err().to_string();
        assert!(err.contains("A B"), "{err}");
    }
}
