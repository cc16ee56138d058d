//! The inventory: which services Prescale collects and scales, and each one's scaling
//! settings, declared once.
//!
//! Three sources, merged by [`Inventory::merge`]:
//! - a static list in the component's TOML (local runs, or to override);
//! - a Prometheus discovery query (the collector's `[services.discover]`);
//! - the KEDA ScaledObjects that point at the predictor ([`scaled_object`], watched by the
//!   reflector of [`watch`]): the one place an operator declares a scaled service. Their
//!   trigger metadata carries the service's scaling settings ([`Overrides`]: capacity per
//!   replica, pod startup, quantile, burst settings, ...) and `minReplicaCount` /
//!   `maxReplicaCount` its bounds.
//!
//! Static settings win over a ScaledObject's, which win over the component's defaults. A
//! bound caps how many services the inventory holds (past it, services are refused and
//! counted, never silently dropped one step and taken the next).

pub mod scaled_object;
#[cfg(feature = "kube")]
pub mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ServiceId;

/// Per-service scaling settings, each optional: what a ScaledObject's trigger metadata or
/// a static entry says, laid over the component's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Overrides {
    /// Requests per second one replica serves within its latency objective.
    pub capacity: Option<f64>,
    /// Fewest replicas.
    pub min_replicas: Option<u32>,
    /// Most replicas.
    pub max_replicas: Option<u32>,
    /// Pod startup.
    #[serde(with = "humantime_serde")]
    pub startup: Option<Duration>,
    /// How far ahead the forecast term looks.
    #[serde(with = "humantime_serde")]
    pub lookahead: Option<Duration>,
    /// `p50` or `p90`.
    pub quantile: Option<String>,
    /// Extra share of demand to provision for.
    pub headroom: Option<f64>,
    /// Utilisation of the reactive floor.
    pub floor_utilisation: Option<f64>,
    /// Scale-down stabilisation window.
    #[serde(with = "humantime_serde")]
    pub scale_down_window: Option<Duration>,
    /// Largest change of replicas per decision.
    pub max_change: Option<u32>,
    /// The burst profile's quantile to cover.
    pub burst_quantile: Option<f64>,
    /// How long after the pod startup the burst term also covers.
    #[serde(with = "humantime_serde")]
    pub burst_span: Option<Duration>,
    /// The largest share of under-provisioned time accepted (0.001: 0.1%).
    pub objective: Option<f64>,
}

impl Overrides {
    /// `self`, with every unset field taken from `under`.
    pub fn over(&self, under: &Overrides) -> Overrides {
        macro_rules! pick {
            ($($f:ident),*) => { Overrides { $($f: self.$f.clone().or_else(|| under.$f.clone())),* } };
        }
        pick!(
            capacity,
            min_replicas,
            max_replicas,
            startup,
            lookahead,
            quantile,
            headroom,
            floor_utilisation,
            scale_down_window,
            max_change,
            burst_quantile,
            burst_span,
            objective
        )
    }
}

/// Where a service of the inventory was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The component's static list.
    Static,
    /// A KEDA ScaledObject.
    ScaledObject,
    /// Prometheus discovery.
    Discovered,
}

/// One service of the inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Which service.
    pub id: ServiceId,
    /// Its settings, merged.
    pub overrides: Overrides,
    /// Where it was declared first in precedence (static, then ScaledObject, then
    /// discovery).
    pub origin: Origin,
}

/// The merged services, sorted by id, within the bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Inventory {
    /// The services.
    pub entries: Vec<Entry>,
    /// Services left out because the bound was reached (the last ones by id).
    pub refused: Vec<ServiceId>,
    /// ScaledObjects on the predictor refused for bad metadata.
    pub invalid: usize,
}

impl Inventory {
    /// Merges the sources: a service in several gets the static settings over the
    /// ScaledObject's; at most `max_services` are kept (by id), the rest are refused.
    pub fn merge(
        listed: &[(ServiceId, Overrides)],
        scaled: &[(ServiceId, Overrides)],
        discovered: &[ServiceId],
        max_services: usize,
    ) -> Self {
        let mut all: BTreeMap<ServiceId, Entry> = BTreeMap::new();
        for id in discovered {
            all.insert(
                id.clone(),
                Entry { id: id.clone(), overrides: Overrides::default(), origin: Origin::Discovered },
            );
        }
        for (id, o) in scaled {
            all.insert(id.clone(), Entry { id: id.clone(), overrides: o.clone(), origin: Origin::ScaledObject });
        }
        for (id, o) in listed {
            let under = all.get(id).map(|e| e.overrides.clone()).unwrap_or_default();
            all.insert(id.clone(), Entry { id: id.clone(), overrides: o.over(&under), origin: Origin::Static });
        }
        let mut entries: Vec<Entry> = all.into_values().collect();
        let refused = if entries.len() > max_services {
            entries.split_off(max_services).into_iter().map(|e| e.id).collect()
        } else {
            Vec::new()
        };
        Self { entries, refused, invalid: 0 }
    }

    /// The ids, sorted.
    pub fn ids(&self) -> Vec<ServiceId> {
        self.entries.iter().map(|e| e.id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ServiceId {
        s.parse().unwrap()
    }

    #[test]
    fn static_settings_win_and_the_bound_refuses_the_rest() {
        let so = Overrides { capacity: Some(5.0), min_replicas: Some(2), ..Default::default() };
        let listed = Overrides { capacity: Some(9.0), ..Default::default() };
        let inv = Inventory::merge(
            &[(id("shop/order"), listed)],
            &[(id("shop/order"), so), (id("shop/cart"), Overrides::default())],
            &[id("shop/cart"), id("tools/x"), id("zz/last")],
            3,
        );
        assert_eq!(inv.ids(), vec![id("shop/cart"), id("shop/order"), id("tools/x")]);
        assert_eq!(inv.refused, vec![id("zz/last")]);
        let order = &inv.entries[1];
        assert_eq!((order.overrides.capacity, order.overrides.min_replicas), (Some(9.0), Some(2)));
        assert_eq!(order.origin, Origin::Static);
        assert_eq!(inv.entries[0].origin, Origin::ScaledObject);
        assert_eq!(inv.entries[2].origin, Origin::Discovered);
    }
}
