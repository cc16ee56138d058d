//! Service identity: a Kubernetes namespace and a workload name.
//!
//! Both parts are validated as DNS-1123 labels once, at the edge (config, query results,
//! API paths), so that everything downstream can use them as Prometheus label values,
//! object-store key parts and metric labels without escaping.

use std::fmt;
use std::str::FromStr;

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
    /// A `namespace/name` string without the `/`.
    #[error("service {value:?} must be written namespace/name")]
    NotQualified {
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
        selects(selector, &self.namespace, &self.name)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for ServiceId {
    type Err = ServiceIdError;

    /// Parses `namespace/name`, as configs, flags and the decision's wire format write it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) =
            s.split_once('/').ok_or_else(|| ServiceIdError::NotQualified { value: s.to_owned() })?;
        Self::new(namespace, name)
    }
}

/// Serde as one `namespace/name` string (`#[serde(with = "prescale_core::service::as_text")]`),
/// the form wire formats and configs use; the derived form is a `{namespace, name}` map.
pub mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::ServiceId;

    /// Writes `namespace/name`.
    pub fn serialize<S: Serializer>(id: &ServiceId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    /// Reads and validates `namespace/name`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ServiceId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a user's selector (`namespace/name`, or `name` in any namespace) names the
/// service with these parts. Either part may hold `*` wildcards (any run of characters,
/// as in a shell): `shop/*` is every service of `shop`, `*/order` every `order`,
/// `shop/order-*` the order services of `shop`. Names never contain `*`, so a selector
/// without one means exactly that service.
pub fn selects(selector: &str, namespace: &str, name: &str) -> bool {
    match selector.split_once('/') {
        Some((ns, n)) => glob(ns, namespace) && glob(n, name),
        None => glob(selector, name),
    }
}

/// Shell-style matching with `*` only, without backtracking blow-up: each `*`-separated
/// piece must appear in order, the first at the start and the last at the end.
fn glob(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else { return rest.is_empty() };
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
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

    proptest::proptest! {
        /// Any text: parsing answers (never panics), and what it accepts prints back as
        /// itself and is selected by its own name.
        #[test]
        fn parsing_any_text_answers_and_round_trips(text in "\\PC{0,80}") {
            if let Ok(id) = text.parse::<ServiceId>() {
                proptest::prop_assert_eq!(id.to_string(), text.clone());
                proptest::prop_assert!(selects(&text, id.namespace(), id.name()));
            }
        }

        #[test]
        fn parsing_label_shaped_text_round_trips(ns in "[a-z0-9-]{0,70}", name in "[a-z0-9-]{0,70}") {
            let text = format!("{ns}/{name}");
            if let Ok(id) = text.parse::<ServiceId>() {
                proptest::prop_assert_eq!((id.namespace(), id.name()), (ns.as_str(), name.as_str()));
            }
        }
    }

    #[test]
    fn selectors_take_wildcards_in_either_part() {
        let cases = [
            ("shop/*", "shop", "order", true),
            ("shop/*", "tools", "order", false),
            ("*/order", "tools", "order", true),
            ("shop/order-*", "shop", "order-v2", true),
            ("shop/order-*", "shop", "order", false),
            ("*", "x", "anything", true),
            ("o*r*r", "shop", "order", true),
            ("o*r*r", "shop", "or", false),
            ("ab*ba", "shop", "aba", false),
            ("order", "any", "order", true),
            ("shop/order", "shop", "order-v2", false),
        ];
        for (selector, ns, name, want) in cases {
            assert_eq!(selects(selector, ns, name), want, "{selector} on {ns}/{name}");
        }
    }

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
    fn parses_namespace_slash_name() {
        assert_eq!("shop/order".parse::<ServiceId>().unwrap(), ServiceId::new("shop", "order").unwrap());
        let err = "order".parse::<ServiceId>().unwrap_err().to_string();
        assert!(err.contains("namespace/name") && err.contains("\"order\""), "{err}");
        assert!("shop/Order".parse::<ServiceId>().unwrap_err().to_string().contains("\"Order\""));
        assert!("shop/a/b".parse::<ServiceId>().is_err(), "one slash only");
    }

    #[test]
    fn as_text_round_trips_and_validates() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Wire {
            #[serde(with = "as_text")]
            service: ServiceId,
        }
        let w = Wire { service: ServiceId::new("shop", "order").unwrap() };
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#"{"service":"shop/order"}"#);
        assert_eq!(serde_json::from_str::<Wire>(&json).unwrap(), w);
        assert!(serde_json::from_str::<Wire>(r#"{"service":"order"}"#).is_err());
    }

    #[test]
    fn deserialising_validates() {
        let err = serde_json::from_str::<ServiceId>(r#"{"namespace":"shop","name":"A B"}"#).unwrap_err().to_string();
        assert!(err.contains("A B"), "{err}");
    }
}
