//! What a set of `networking.k8s.io/v1` NetworkPolicies allows, evaluated the way the API
//! documents it: a pod selected by no policy of a direction is open in that direction; a
//! selected pod allows what any selecting policy's rules allow; a connection needs both
//! the source's egress and the destination's ingress. The answer names the policies that
//! allow each side, so a check can ask that exactly one does.
//!
//! Peers outside the pod network (S3, the API server, a managed database) are
//! [`Endpoint::External`] addresses, matched by `ipBlock` only; pods are matched by
//! namespace and pod selectors only (how `ipBlock` treats pod addresses is left to the
//! network plugin, so relying on it for a pod is refused by counting it as no match).
//! Named ports are refused: what a name means depends on the pod.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A rule's peers and ports (`None`: every peer or port).
type Rule<'a> = (Option<&'a Vec<NetworkPolicyPeer>>, Option<&'a Vec<NetworkPolicyPort>>);

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// A pod: its namespace and labels.
    Pod {
        /// Namespace (its `kubernetes.io/metadata.name` label is the name).
        namespace: String,
        /// The pod's labels.
        labels: BTreeMap<String, String>,
    },
    /// An address outside the pod network.
    External(Ipv4Addr),
}

impl Endpoint {
    /// A pod labelled `key=value` in `namespace`.
    pub fn pod(namespace: &str, key: &str, value: &str) -> Self {
        Endpoint::Pod { namespace: namespace.into(), labels: BTreeMap::from([(key.into(), value.into())]) }
    }
}

/// A protocol and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
    /// The port number.
    pub number: i32,
}

/// Which policies allow a connection, per side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// `None`: the source is not isolated for egress; otherwise the allowing policies.
    pub egress: Option<Vec<String>>,
    /// `None`: the destination is not isolated for ingress (or is external).
    pub ingress: Option<Vec<String>>,
}

impl Verdict {
    /// Whether the connection is allowed.
    pub fn allowed(&self) -> bool {
        self.egress.as_ref().is_none_or(|p| !p.is_empty()) && self.ingress.as_ref().is_none_or(|p| !p.is_empty())
    }
}

/// Why policies could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A port given by name.
    #[error("NetworkPolicy {0}: a named port; use the number")]
    NamedPort(String),
    /// A selector expression this evaluator does not know.
    #[error("NetworkPolicy {0}: selector operator {1:?}")]
    Operator(String, String),
    /// An ipBlock that is not an IPv4 CIDR.
    #[error("NetworkPolicy {0}: ipBlock {1:?} is not an IPv4 CIDR")]
    Cidr(String, String),
}

/// The policies of a build, evaluated.
#[derive(Debug, Clone)]
pub struct Policies(Vec<NetworkPolicy>);

impl Policies {
    /// Checks every policy's selectors, ports and blocks can be evaluated.
    pub fn new(policies: Vec<NetworkPolicy>) -> Result<Self, PolicyError> {
        for p in &policies {
            let name = name(p);
            let spec = p.spec.as_ref();
            let mut selectors: Vec<&LabelSelector> = spec.and_then(|s| s.pod_selector.as_ref()).into_iter().collect();
            let mut ports: Vec<&NetworkPolicyPort> = Vec::new();
            let mut peers: Vec<&NetworkPolicyPeer> = Vec::new();
            for r in spec.and_then(|s| s.ingress.as_ref()).into_iter().flatten() {
                ports.extend(r.ports.iter().flatten());
                peers.extend(r.from.iter().flatten());
            }
            for r in spec.and_then(|s| s.egress.as_ref()).into_iter().flatten() {
                ports.extend(r.ports.iter().flatten());
                peers.extend(r.to.iter().flatten());
            }
            for peer in peers {
                selectors.extend(peer.pod_selector.iter().chain(peer.namespace_selector.iter()));
                if let Some(b) = &peer.ip_block {
                    cidr(&b.cidr).ok_or_else(|| PolicyError::Cidr(name.clone(), b.cidr.clone()))?;
                    for e in b.except.iter().flatten() {
                        cidr(e).ok_or_else(|| PolicyError::Cidr(name.clone(), e.clone()))?;
                    }
                }
            }
            for port in ports {
                if matches!(port.port, Some(IntOrString::String(_))) {
                    return Err(PolicyError::NamedPort(name));
                }
            }
            for s in selectors {
                for e in s.match_expressions.iter().flatten() {
                    if !matches!(e.operator.as_str(), "In" | "NotIn" | "Exists" | "DoesNotExist") {
                        return Err(PolicyError::Operator(name, e.operator.clone()));
                    }
                }
            }
        }
        Ok(Self(policies))
    }

    /// The policies allowing `from` to reach `to` on `port`, per side.
    pub fn verdict(&self, from: &Endpoint, to: &Endpoint, port: Port) -> Verdict {
        let egress = match from {
            Endpoint::Pod { namespace, labels } => self.side(namespace, labels, "Egress", to, port),
            Endpoint::External(_) => None,
        };
        let ingress = match to {
            Endpoint::Pod { namespace, labels } => self.side(namespace, labels, "Ingress", from, port),
            Endpoint::External(_) => None,
        };
        Verdict { egress, ingress }
    }

    fn side(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        direction: &str,
        peer: &Endpoint,
        port: Port,
    ) -> Option<Vec<String>> {
        let mut isolated = false;
        let mut allowing = Vec::new();
        for p in &self.0 {
            let Some(spec) = &p.spec else { continue };
            if p.metadata.namespace.as_deref() != Some(namespace)
                || !spec.pod_selector.as_ref().is_none_or(|s| selects(s, labels))
            {
                continue;
            }
            let types = spec.policy_types.clone().unwrap_or_else(|| {
                // The API's default: Ingress always, Egress when egress rules are given.
                let mut t = vec!["Ingress".to_owned()];
                if spec.egress.is_some() {
                    t.push("Egress".to_owned());
                }
                t
            });
            if !types.iter().any(|t| t == direction) {
                continue;
            }
            isolated = true;
            let rules: Vec<Rule<'_>> = if direction == "Ingress" {
                spec.ingress.iter().flatten().map(|r| (r.from.as_ref(), r.ports.as_ref())).collect()
            } else {
                spec.egress.iter().flatten().map(|r| (r.to.as_ref(), r.ports.as_ref())).collect()
            };
            let allows = rules.iter().any(|(peers, ports)| {
                let peer_ok = match peers {
                    None => true,
                    Some(list) if list.is_empty() => true,
                    Some(list) => list.iter().any(|q| peer_matches(q, namespace, peer)),
                };
                let port_ok = match ports {
                    None => true,
                    Some(list) if list.is_empty() => true,
                    Some(list) => list.iter().any(|q| port_matches(q, port)),
                };
                peer_ok && port_ok
            });
            if allows {
                allowing.push(name(p));
            }
        }
        isolated.then_some(allowing)
    }
}

fn name(p: &NetworkPolicy) -> String {
    format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or("?"), p.metadata.name.as_deref().unwrap_or("?"))
}

fn peer_matches(q: &NetworkPolicyPeer, policy_namespace: &str, peer: &Endpoint) -> bool {
    match peer {
        Endpoint::External(ip) => {
            let Some(b) = &q.ip_block else { return false };
            let within = |c: &str| cidr(c).is_some_and(|(net, bits)| masked(*ip, bits) == masked(net, bits));
            within(&b.cidr) && !b.except.iter().flatten().any(|e| within(e))
        }
        Endpoint::Pod { namespace, labels } => {
            if q.ip_block.is_some() {
                return false;
            }
            let ns_ok = match &q.namespace_selector {
                None => namespace == policy_namespace,
                Some(s) => selects(s, &BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), namespace.clone())])),
            };
            let pod_ok = q.pod_selector.as_ref().is_none_or(|s| selects(s, labels));
            ns_ok && pod_ok
        }
    }
}

fn port_matches(q: &NetworkPolicyPort, port: Port) -> bool {
    let protocol = q.protocol.as_deref().unwrap_or("TCP");
    if protocol != port.protocol {
        return false;
    }
    match &q.port {
        None => true,
        Some(IntOrString::Int(p)) => {
            let end = q.end_port.unwrap_or(*p);
            (*p..=end).contains(&port.number)
        }
        Some(IntOrString::String(_)) => false,
    }
}

/// Whether a label selector selects `labels` (an empty selector selects everything).
pub fn selects(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = s.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = s.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

fn cidr(text: &str) -> Option<(Ipv4Addr, u32)> {
    let (ip, bits) = text.split_once('/')?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
    Some((ip.parse().ok()?, bits))
}

fn masked(ip: Ipv4Addr, bits: u32) -> u32 {
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policies(v: serde_json::Value) -> Policies {
        Policies::new(serde_json::from_value(v).unwrap()).unwrap()
    }

    #[test]
    fn isolation_selectors_ports_and_blocks() {
        let tcp = |n| Port { protocol: "TCP", number: n };
        let a = Endpoint::pod("x", "app", "a");
        let b = Endpoint::pod("x", "app", "b");
        let c = Endpoint::pod("y", "app", "c");
        // No policies: everything is open.
        let open = policies(json!([]));
        assert!(open.verdict(&a, &b, tcp(80)).allowed());
        let p = policies(json!([
            {"metadata": {"name": "deny", "namespace": "x"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
            {"metadata": {"name": "b", "namespace": "x"}, "spec": {"podSelector": {"matchLabels": {"app": "b"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}]}},
            {"metadata": {"name": "a", "namespace": "x"}, "spec": {"podSelector": {"matchLabels": {"app": "a"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["b"]}]}}], "ports": [{"port": 80}]},
                           {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}], "ports": [{"port": 443}]}]}}
        ]));
        let v = p.verdict(&a, &b, tcp(80));
        assert!(v.allowed());
        assert_eq!(v.egress.unwrap(), ["x/a"]);
        assert_eq!(v.ingress.unwrap(), ["x/b"]);
        assert!(!p.verdict(&a, &b, tcp(81)).allowed(), "another port");
        assert!(!p.verdict(&a, &b, Port { protocol: "UDP", number: 80 }).allowed(), "another protocol");
        assert!(!p.verdict(&b, &a, tcp(80)).allowed(), "the other way");
        // A pod of another namespace: the podSelector alone means the policy's namespace.
        let v = p.verdict(&c, &b, tcp(80));
        assert!(!v.allowed() && v.egress.is_none(), "{v:?}");
        assert!(p.verdict(&a, &Endpoint::External("52.1.2.3".parse().unwrap()), tcp(443)).allowed());
        assert!(!p.verdict(&a, &Endpoint::External("10.1.2.3".parse().unwrap()), tcp(443)).allowed(), "except");
        assert!(!p.verdict(&a, &c, tcp(443)).allowed(), "an ipBlock never stands for a pod here");
        // Named ports are refused.
        let named = json!([{"metadata": {"name": "n", "namespace": "x"}, "spec": {"podSelector": {},
            "ingress": [{"ports": [{"port": "http"}]}]}}]);
        let err = Policies::new(serde_json::from_value(named).unwrap()).unwrap_err();
        assert!(err.to_string().contains("x/n"), "{err}");
    }
}
