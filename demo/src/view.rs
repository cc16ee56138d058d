//! The terminal view: one line per service from the predictor's `GET /api/v1/services`,
//! observed demand and the replicas it needs now against the replicas predicted ten
//! minutes ahead, with the forecast peak that set them.

use std::fmt::Write as _;

use prescale_policy::{Reason, ServicesResponse};

/// What the predictor serves, summed up for the demo's progress checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    /// Services the predictor decides for.
    pub services: usize,
    /// Of those, services whose decision came with a model's forecast.
    pub forecasting: usize,
}

/// Counts the services with a forecast.
pub fn coverage(body: &ServicesResponse) -> Coverage {
    Coverage {
        services: body.services.len(),
        forecasting: body.services.iter().filter(|s| s.decision.forecast.is_some()).count(),
    }
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

/// The table of the predictor's decisions.
pub fn table(body: &ServicesResponse) -> String {
    let time = body.services.first().map(|s| s.decision.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut out = format!("step {}{}\n", or_dash(time), if body.shadow { "  (shadow mode)" } else { "" });
    let _ = writeln!(
        out,
        "{:<22} {:>8} {:>10} {:>7} {:>10} {:>18}  reason",
        "service", "req/s", "p90 peak", "needed", "predicted", "forecaster"
    );
    for s in &body.services {
        let d = &s.decision;
        let peak = d.forecast.as_ref().and_then(|f| f.p90.iter().copied().reduce(f64::max));
        let reason = match d.reason {
            Reason::Forecast { at_seconds } | Reason::Burst { at_seconds } => {
                format!("{} (peak in {at_seconds} s)", d.reason.label())
            }
            other => other.label().to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>10} {:>7} {:>10} {:>18}  {}",
            d.service.to_string(),
            or_dash(d.observed_demand.map(|v| format!("{v:.1}"))),
            or_dash(peak.map(|p| format!("{p:.1}"))),
            or_dash(d.reactive_replicas),
            s.replicas,
            // The version is on the live page and in the API; here, what forecast.
            d.forecast.as_ref().map_or("none", |f| f.forecaster.as_str()),
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
        let body: ServicesResponse = serde_json::from_value(serde_json::json!({
            "shadow": false,
            "services": [
                {"service": "storefront/gateway", "time": "2026-01-01T00:00:10Z", "observed_demand": 12.34,
                 "desired_replicas": 4, "reactive_replicas": 2, "replicas": 4, "shadow": false,
                 "reason": {"kind": "forecast", "at_seconds": 300},
                 "forecast": {"p50": [10.0, 20.0], "p90": [15.0, 31.5], "step_seconds": 10.0, "model_version": "20260101T000000Z",
                              "forecaster": "holt_winters"}},
                {"service": "storefront/authen", "time": "2026-01-01T00:00:10Z", "observed_demand": null,
                 "desired_replicas": 1, "replicas": 1, "shadow": false, "reason": {"kind": "reactive"}, "forecast": null}
            ]
        }))
        .unwrap();
        let t = table(&body);
        assert!(t.contains("storefront/gateway"), "{t}");
        assert!(t.contains("31.5") && t.contains("forecast (peak in 300 s)") && t.contains("holt_winters"), "{t}");
        assert!(t.lines().nth(3).unwrap().contains("none"), "{t}");
        assert_eq!(coverage(&body), Coverage { services: 2, forecasting: 1 });
    }
}
