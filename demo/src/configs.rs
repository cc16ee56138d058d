//! The files the demo writes for its parts: Prometheus' scrape config (with the shipped
//! recording and alerting rules), the collector's and the predictor's TOML, and the
//! fleet model's training settings. Everything is derived from the [`Settings`], so a
//! test can run the same loop with shorter steps and other ports.

use std::fmt::Write as _;
use std::path::Path;

use crate::Settings;
use crate::traffic::DAY_STEPS;

/// The storefront's services in the order of its default ports (gateway 8080, then
/// authen 4000 to recommender 4005), with the requests/s one replica serves in the demo.
pub const SERVICES: [(&str, f64); 7] = [
    ("gateway", 8.0),
    ("authen", 1.0),
    ("booking", 2.0),
    ("order", 2.0),
    ("product", 6.0),
    ("profile", 2.0),
    ("recommender", 2.0),
];

/// The port of each storefront service: the gateway's, then the others in a row from
/// `backends`, in the storefront's own order (so the default settings are its defaults).
pub fn storefront_ports(s: &Settings) -> Vec<(&'static str, u16)> {
    let mut backends = s.ports.backends;
    SERVICES
        .iter()
        .map(|(name, _)| {
            if *name == "gateway" {
                (*name, s.ports.gateway)
            } else {
                backends += 1;
                (*name, backends - 1)
            }
        })
        .collect()
}

/// Prometheus' scrape interval: half a step, so every step sees a fresh sample.
pub fn scrape_interval(s: &Settings) -> String {
    format!("{}ms", s.step_secs * 500)
}

/// The rate window of the catalog: three steps.
fn window(s: &Settings) -> String {
    format!("{}s", s.step_secs * 3)
}

/// `prometheus.yml`: the storefront (with the `namespace` and `service` labels that
/// `deploy/prometheus/prometheus.yml` derives from DNS names in a cluster), the collector,
/// the predictor (whose series carry their own `namespace` and `service`), and the shipped
/// rule files.
pub fn prometheus_yml(s: &Settings) -> String {
    let rules = s.repo.join("deploy/prometheus/rules");
    let mut y = format!(
        "global:\n  scrape_interval: {i}\n  evaluation_interval: {i}\nrule_files:\n  - {rules:?}\nscrape_configs:\n  - job_name: storefront\n    honor_labels: true\n    static_configs:\n",
        i = scrape_interval(s),
        rules = format!("{}/*.yml", rules.display()),
    );
    for (name, port) in storefront_ports(s) {
        let _ = writeln!(
            y,
            "      - targets: [\"127.0.0.1:{port}\"]\n        labels: {{namespace: storefront, service: {name}}}"
        );
    }
    let _ = write!(
        y,
        "  - job_name: prescale-collector\n    static_configs:\n      - targets: [\"127.0.0.1:{c}\"]\n  - job_name: prescale-predictor\n    honor_labels: true\n    static_configs:\n      - targets: [\"127.0.0.1:{p}\"]\n",
        c = s.ports.collector,
        p = s.ports.predictor_http,
    );
    y
}

/// The collector: the storefront catalog, Parquet to `<dir>/store`.
pub fn collector_toml(s: &Settings, dir: &Path) -> String {
    format!(
        r#"# Written by prescale-demo.
id = "demo"
step = "{step}s"
query_delay = "{delay}"
flush_interval = "{flush}s"
spool_dir = {spool:?}
listen = "127.0.0.1:{port}"

[prometheus]
url = "http://127.0.0.1:{prom}"

[store]
location = {store:?}

[catalog]
base = "storefront"
window = "{window}"

# The demo's services, from the one list the predictor's settings come from too (in a
# cluster: the ScaledObjects). No discovery query: a step costs one query per feature.
[services]
list = [{list}]
"#,
        list = SERVICES.iter().map(|(name, _)| format!("\"storefront/{name}\"")).collect::<Vec<_>>().join(", "),
        step = s.step_secs,
        delay = scrape_interval(s),
        flush = s.step_secs * 12,
        spool = dir.join("collector-spool").display().to_string(),
        port = s.ports.collector,
        prom = s.ports.prometheus,
        store = dir.join("store").display().to_string(),
        window = window(s),
    )
}

/// Where the fleet model is kept; every service is served from it (level normalisation
/// lets one model serve services of any size), each by its own chosen forecaster.
pub fn fleet_models(dir: &Path) -> std::path::PathBuf {
    dir.join("models/fleet")
}

/// The collector's feature table (what the trainer's `--data` names).
pub fn table(dir: &Path) -> std::path::PathBuf {
    dir.join("store/metrics")
}

/// The predictor: every storefront service, the fleet model, a policy scaled to the
/// demo's step (pods take two steps to start, scale-down waits six).
pub fn predictor_toml(s: &Settings, dir: &Path) -> String {
    let mut t = format!(
        r#"# Written by prescale-demo.
step = "{step}s"
query_delay = "{delay}"
history = "{history}s"
reload_interval = "{reload}s"
staleness = "{stale}s"
listen = "127.0.0.1:{http}"
grpc_listen = "127.0.0.1:{grpc}"
fleet_model = {fleet:?}

[prometheus]
url = "http://127.0.0.1:{prom}"

[catalog]
base = "storefront"
window = "{window}"

[models]
location = {models:?}

[policy]
min_replicas = 1
max_replicas = 20
startup = "{startup}s"
scale_down_window = "{down}s"
"#,
        step = s.step_secs,
        delay = scrape_interval(s),
        // A compressed day and a horizon: the seasonal lags have data after the first day.
        history = s.step_secs * (DAY_STEPS as u64 + 600 / s.step_secs.max(1)),
        reload = s.step_secs * 3,
        stale = s.step_secs * 6,
        http = s.ports.predictor_http,
        grpc = s.ports.predictor_grpc,
        prom = s.ports.prometheus,
        window = window(s),
        models = dir.join("models").display().to_string(),
        fleet = fleet_models(dir).display().to_string(),
        startup = s.step_secs * 2,
        down = s.step_secs * 6,
    );
    for (name, capacity) in SERVICES {
        let _ = write!(t, "\n[[services]]\nservice = \"storefront/{name}\"\ncapacity = {capacity:?}\n",);
    }
    t
}

/// The fleet model's training settings: a small transformer (a minute or two on a
/// laptop CPU) whose season is the compressed day.
pub fn train_toml(s: &Settings) -> String {
    format!(
        r#"# Written by prescale-demo: a small, fast fleet model.
context = {context}
d_model = 32
heads = 4
layers = 1
ff = 64
batch = 128
samples_per_epoch = 4096
max_epochs = 30
patience = 4
max_seconds = {secs}
season_steps = {DAY_STEPS}
"#,
        context = s.context,
        secs = s.train_seconds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ports_are_the_storefronts_own() {
        let ours = storefront_ports(&Settings::default());
        assert_eq!(ours.len(), storefront::Service::ALL.len());
        for service in storefront::Service::ALL {
            let port = ours.iter().find(|(name, _)| *name == service.name()).map(|(_, p)| *p);
            assert_eq!(port, Some(service.default_port()), "{}", service.name());
        }
    }

    #[test]
    fn ports_and_intervals_follow_the_settings() {
        let s = Settings::default();
        let ports = storefront_ports(&s);
        assert_eq!(ports[0], ("gateway", 8080));
        assert_eq!(ports[1], ("authen", 4000));
        assert_eq!(ports[6], ("recommender", 4005));
        assert_eq!(scrape_interval(&s), "5000ms");
        let y = prometheus_yml(&s);
        assert!(y.contains("labels: {namespace: storefront, service: recommender}"), "{y}");
        assert!(y.contains("deploy/prometheus/rules/*.yml"), "{y}");
        let p = predictor_toml(&s, Path::new("/tmp/d"));
        assert_eq!(p.matches("[[services]]").count(), 7);
        assert!(p.contains("history = \"4200s\""), "{p}");
        assert!(p.contains("fleet_model = \"/tmp/d/models/fleet\""), "{p}");
    }
}
