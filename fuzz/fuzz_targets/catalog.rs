//! `[catalog]` templates and service selectors as an operator writes them: a catalog whose
//! every query parses, or a refusal naming the feature; selectors and service ids that
//! match or are refused, never a panic; and a rendered query for a valid namespace parses.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use prescale_core::ServiceId;
use prescale_core::prometheus::catalog::{Catalog, CatalogConfig, CatalogName};
use prescale_core::service::selects;

#[derive(Debug, Arbitrary)]
struct Input {
    base: u8,
    window_ms: u64,
    features: Vec<(String, String)>,
    selector: String,
    service: String,
}

fuzz_target!(|input: Input| {
    let base = match input.base % 3 {
        0 => CatalogName::Kubernetes,
        1 => CatalogName::Storefront,
        _ => CatalogName::None,
    };
    let config = CatalogConfig {
        base,
        window: Duration::from_millis(input.window_ms),
        features: input.features.into_iter().collect::<BTreeMap<_, _>>(),
    };
    let service: Result<ServiceId, _> = input.service.parse();
    if let Ok(id) = &service {
        let _ = id.matches(&input.selector);
        assert!(id.matches(&id.to_string()), "a service matches its own name");
    }
    let _ = selects(&input.selector, "ns", "name");
    match Catalog::from_config(&config) {
        Ok(catalog) => {
            if let Ok(id) = &service {
                for feature in catalog.features() {
                    let query = catalog.render(feature, &[id.namespace()]).expect("a feature of the catalog renders");
                    assert!(promql_ok(&query), "a checked template renders to PromQL for every valid namespace: {query}");
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});

fn promql_ok(query: &str) -> bool {
    promql_parser::parser::parse(query).is_ok()
}
