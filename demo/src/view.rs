//! The terminal view: one line per service from the predictor's `GET /api/v1/services`,
//! observed demand and the replicas it needs now against the replicas predicted ten
//! minutes ahead, with the forecast peak that set them.

use std::fmt::Write as _;

use serde_json::Value;

/// What the predictor serves, summed up for the demo's progress checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    /// Services the predictor decides for.
    pub services: usize,
    /// Of those, services whose decision came with a model's forecast.
    pub forecasting: usize,
}

/// Counts the services with a forecast in a `GET /api/v1/services` body.
pub fn coverage(body: &Value) -> Coverage {
    let services = body["services"].as_array().map(Vec::as_slice).unwrap_or_default();
    Coverage { services: services.len(), forecasting: services.iter().filter(|s| s["forecast"].is_object()).count() }
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"))
}

/// The table for a `GET /api/v1/services` body.
pub fn table(body: &Value) -> String {
    let services = body["services"].as_array().map(Vec::as_slice).unwrap_or_default();
    let time = services.first().and_then(|s| s["time"].as_str()).unwrap_or("–");
    let mut out = format!("step {time}{}\n", if body["shadow"] == true { "  (shadow mode)" } else { "" });
    let _ = writeln!(
        out,
        "{:<22} {:>8} {:>10} {:>7} {:>10} {:>17}  reason",
        "service", "req/s", "p90 peak", "needed", "predicted", "model"
    );
    for s in services {
        let f = &s["forecast"];
        let peak = f["p90"].as_array().and_then(|a| a.iter().filter_map(Value::as_f64).reduce(f64::max));
        let reason = match (s["reason"]["kind"].as_str(), s["reason"]["at_seconds"].as_u64()) {
            (Some(k), Some(at)) => format!("{k} (peak in {at} s)"),
            (Some(k), None) => k.to_owned(),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>10} {:>7} {:>10} {:>17}  {}",
            s["service"].as_str().unwrap_or("?"),
            num(&s["observed_demand"], 1),
            peak.map_or_else(|| "–".to_owned(), |p| format!("{p:.1}")),
            s["reactive_replicas"].as_u64().map_or_else(|| "–".to_owned(), |n| n.to_string()),
            s["replicas"].as_u64().map_or_else(|| "–".to_owned(), |n| n.to_string()),
            f["model_version"].as_str().unwrap_or("none"),
            reason,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_per_service_with_its_forecast_peak() {
        let body = serde_json::json!({
            "shadow": false,
            "services": [
                {"service": "storefront/gateway", "time": "2026-01-01T00:00:10Z", "observed_demand": 12.34,
                 "reactive_replicas": 2, "replicas": 4, "reason": {"kind": "forecast", "at_seconds": 300},
                 "forecast": {"p50": [10.0, 20.0], "p90": [15.0, 31.5], "step_seconds": 10.0, "model_version": "20260101T000000Z"}},
                {"service": "storefront/authen", "time": "2026-01-01T00:00:10Z", "observed_demand": null,
                 "replicas": 1, "reason": {"kind": "reactive"}, "forecast": null}
            ]
        });
        let t = table(&body);
        assert!(t.contains("storefront/gateway"), "{t}");
        assert!(t.contains("31.5") && t.contains("forecast (peak in 300 s)") && t.contains("20260101T000000Z"), "{t}");
        assert!(t.lines().nth(3).unwrap().contains("none"), "{t}");
        assert_eq!(coverage(&body), Coverage { services: 2, forecasting: 1 });
    }
}
