//! Feature rows from Prometheus: the catalog's queries for all services at once, at one
//! instant (live steps) or over a range of steps (backfill and gap filling).
//!
//! Each catalog query aggregates by `(namespace, service)`, so a step costs one query per
//! feature whatever the number of services, and range queries are cut into chunks of time
//! small enough that no answer exceeds [`PrometheusConfig::max_points`]. A service absent
//! from an answer has the feature missing, never zero. An instant query at step `t` and a
//! range query whose grid contains `t` evaluate the same PromQL at the same time, so a
//! step filled later from a range query holds the values the live step would have had.
//! Transport failures, timeouts and Prometheus' own overload answers are *transient*:
//! they are retried with backoff and, if they persist, fail the whole step so that it is
//! filled later. A query Prometheus rejects, or one whose answer is not one series per
//! service, is a catalog mistake: the feature is stored as missing, logged and counted,
//! and the step goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use crate::{Feature, FeatureRow, ServiceId, StepGrid};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_http_query::response::Data;
use prometheus_http_query::{Client, Error as PromError};
use serde::{Deserialize, Serialize};

use super::access::{Access, BasicAuth, TlsConfig};
use super::catalog::{Catalog, SERVICE_LABELS};
use crate::config::FieldError;
use crate::inventory::{Inventory, Overrides};

/// The `[prometheus]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus HTTP API.
    pub url: String,
    /// Time limit of one query, on the wire and in Prometheus.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries of a query that failed transiently.
    pub retries: u32,
    /// Wait before the first retry, about; the ceiling doubles at each further one, and
    /// each wait is drawn in its upper half ([`crate::backoff::Backoff`]).
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Queries in flight at once.
    pub concurrency: usize,
    /// The most points (services × steps) one range query may return; longer ranges are
    /// read in chunks of time. Prometheus itself refuses more than 11,000 steps per series.
    pub max_points: usize,
    /// A file holding a bearer token, sent as `Authorization: Bearer <token>` and re-read
    /// whenever the file changes.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth (the password in a file, re-read likewise), instead of a bearer token.
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings for an `https://` URL.
    pub tls: TlsConfig,
    /// Headers sent with every request, such as `X-Scope-OrgID = "team-a"`.
    pub headers: BTreeMap<String, String>,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9090".into(),
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(250),
            concurrency: 16,
            max_points: 250_000,
            bearer_token_file: None,
            basic_auth: None,
            tls: TlsConfig::default(),
            headers: BTreeMap::new(),
        }
    }
}

/// The `[services]` section: which services get a row each step (the inventory's
/// sources: a static list, a discovery query, the ScaledObjects on the predictor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    /// Services always sampled, as `namespace/name`.
    pub list: Vec<String>,
    /// Services found by a PromQL query.
    pub discover: Option<Discovery>,
    /// Services declared by KEDA ScaledObjects pointing at the predictor.
    pub scaled_objects: Option<ScaledObjectsConfig>,
    /// The most services the inventory holds; past it, services are refused and counted.
    pub max: usize,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self { list: Vec::new(), discover: None, scaled_objects: None, max: 10_000 }
    }
}

/// `[services.scaled_objects]`: the ScaledObjects to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaledObjectsConfig {
    /// The predictor's host as triggers name it (`scalerAddress` of `external` triggers,
    /// the host of `metrics-api` URLs), such as `predictor.prescale.svc.cluster.local`.
    pub predictor: String,
    /// Watch one namespace only; all by default (a ClusterRole to list and watch).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Service discovery: every series the query returns names one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// PromQL returning one series per service, such as
    /// `group by (namespace, service) (up{job="storefront"})`.
    pub query: String,
    /// The label holding the namespace.
    #[serde(default = "default_namespace_label")]
    pub namespace_label: String,
    /// The label holding the service name.
    #[serde(default = "default_service_label")]
    pub service_label: String,
    /// How often the query is re-evaluated (services appear within this long).
    #[serde(default = "default_discover_every", with = "humantime_serde")]
    pub every: Duration,
}

fn default_discover_every() -> Duration {
    Duration::from_secs(60)
}

fn default_namespace_label() -> String {
    "namespace".into()
}

fn default_service_label() -> String {
    "service".into()
}

impl ServicesConfig {
    /// The listed services, validated; an error names the bad entry.
    pub fn listed(&self) -> Result<Vec<ServiceId>, FieldError> {
        self.list.iter().map(|s| s.parse().map_err(|e| FieldError::new("services.list", e))).collect()
    }

    /// Checks the section: entries well formed, the discovery query parses, something
    /// to sample.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.listed()?;
        if let Some(d) = &self.discover {
            promql_parser::parser::parse(&d.query)
                .map_err(|e| FieldError::new("services.discover.query", format!("does not parse as PromQL: {e}")))?;
        }
        if let Some(so) = &self.scaled_objects {
            if so.predictor.trim().is_empty() || so.predictor.contains(['/', ':']) {
                return Err(FieldError::new(
                    "services.scaled_objects.predictor",
                    format!("{:?} must be the predictor's host name, without scheme or port", so.predictor),
                ));
            }
            if let Some(ns) = &so.namespace {
                crate::service::validate_label("namespace", ns)
                    .map_err(|e| FieldError::new("services.scaled_objects.namespace", e))?;
            }
        }
        if self.max == 0 {
            return Err(FieldError::new("services.max", "must be at least 1"));
        }
        if self.list.is_empty() && self.discover.is_none() && self.scaled_objects.is_none() {
            return Err(FieldError::new(
                "services",
                "list some services (services.list), discover them (services.discover) or follow the ScaledObjects (services.scaled_objects)",
            ));
        }
        Ok(())
    }
}

/// Why a query gave no value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// Prometheus did not answer, or answered that it is overloaded; worth retrying later.
    #[error("Prometheus unreachable for `{query}`: {message}")]
    Unreachable {
        /// The query.
        query: String,
        /// What went wrong.
        message: String,
    },
    /// Prometheus (or the gateway before it) refused our credentials: the steps are
    /// filled later, once the token file or password is right.
    #[error(
        "Prometheus refused the credentials (HTTP {status}) for `{query}`: check prometheus.bearer_token_file, prometheus.basic_auth and prometheus.tls"
    )]
    Unauthorized {
        /// The query.
        query: String,
        /// 401 or 403.
        status: u16,
    },
    /// Prometheus refused the query; retrying will not help.
    #[error("Prometheus rejected `{query}`: {message}")]
    Rejected {
        /// The query.
        query: String,
        /// Prometheus' explanation.
        message: String,
    },
    /// A feature query's answer is not one series per service.
    #[error("`{query}` {what}; a feature query must aggregate by (namespace, service)")]
    NotGrouped {
        /// The query.
        query: String,
        /// What came back instead.
        what: String,
    },
}

impl QueryError {
    /// Whether the failure says nothing about the query itself.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueryError::Unreachable { .. } | QueryError::Unauthorized { .. })
    }
}

fn classify(query: &str, err: PromError) -> QueryError {
    let status = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<reqwest::Error>())
        .and_then(reqwest::Error::status)
        .map(|s| s.as_u16());
    if let Some(status @ (401 | 403)) = status {
        return QueryError::Unauthorized { query: query.to_owned(), status };
    }
    // The whole chain: "error sending request" alone hides a TLS or DNS failure.
    let mut message = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(e) = cause {
        message.push_str(&format!(": {e}"));
        cause = e.source();
    }
    let query = query.to_owned();
    match err {
        PromError::Prometheus(e) if e.is_bad_data() || e.is_not_found() || e.is_execution() => {
            QueryError::Rejected { query, message }
        }
        PromError::ParseUrl(_) | PromError::EmptySeriesSelector => QueryError::Rejected { query, message },
        _ => QueryError::Unreachable { query, message },
    }
}

/// The catalog's queries against one Prometheus.
#[derive(Clone)]
pub struct Source {
    client: Client,
    access: Access,
    config: PrometheusConfig,
    catalog: Catalog,
    services: ServicesConfig,
    listed: Vec<ServiceId>,
    errors: Counter,
    /// The last discovery answer and when it was asked, reused for `discover.every`.
    discovered: std::sync::Arc<std::sync::Mutex<Option<Discovered>>>,
    /// The ScaledObjects' services, when watched.
    declared: Option<Declared>,
}

/// A discovery answer and when it was asked.
type Discovered = (tokio::time::Instant, Vec<ServiceId>);

/// Where the ScaledObjects' services come from: a snapshot function (the reflector's, in
/// a cluster; a fixed list in tests).
pub type Declared = std::sync::Arc<dyn Fn() -> DeclaredNow + Send + Sync>;

/// What the ScaledObjects declare now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeclaredNow {
    /// Services and their settings.
    pub services: Vec<(ServiceId, Overrides)>,
    /// ScaledObjects on the predictor that were refused (bad metadata).
    pub refused: usize,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("url", &self.config.url).field("services", &self.listed).finish_non_exhaustive()
    }
}

impl Source {
    /// A source; `errors` counts every failed query attempt.
    pub fn new(
        config: PrometheusConfig,
        catalog: Catalog,
        services: ServicesConfig,
        errors: Counter,
    ) -> Result<Self, FieldError> {
        services.validate()?;
        let (access, http) = Access::build(&config)?;
        let client = Client::from(http, &config.url)
            .map_err(|e| FieldError::new("prometheus.url", format!("{:?} is not a URL: {e}", config.url)))?;
        let listed = services.listed()?;
        Ok(Self {
            client,
            access,
            config,
            catalog,
            services,
            listed,
            errors,
            discovered: Default::default(),
            declared: None,
        })
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Adds the services ScaledObjects declare (`declared` returns them now).
    pub fn with_declared(self, declared: Declared) -> Self {
        Self { declared: Some(declared), ..self }
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the retries are spent.
    async fn retried<T, F, Fut>(&self, query: &str, attempt: F) -> Result<T, QueryError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, PromError>>,
    {
        let mut backoff = crate::backoff::Backoff::new(self.config.backoff, self.config.backoff * 16);
        let mut tries = 0;
        loop {
            match attempt().await.map_err(|e| classify(query, e)) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.errors.inc();
                    if !e.is_transient() || tries >= self.config.retries {
                        return Err(e);
                    }
                    let wait = backoff.next_delay();
                    tracing::debug!(error = %e, retry_in = ?wait, "query failed; retrying");
                    tokio::time::sleep(wait).await;
                    tries += 1;
                }
            }
        }
    }

    fn timeout_ms(&self) -> i64 {
        self.config.timeout.as_millis() as i64
    }

    async fn instant(&self, query: &str, at: DateTime<Utc>) -> Result<Data, QueryError> {
        self.retried(query, || async {
            let mut q = self.client.query(query).at(at.timestamp()).timeout(self.timeout_ms());
            if let Some(auth) = self.access.authorization() {
                q = q.header(reqwest::header::AUTHORIZATION, auth);
            }
            let r = q.get().await?;
            Ok(r.into_inner().0)
        })
        .await
    }

    async fn range(&self, query: &str, from: DateTime<Utc>, to: DateTime<Utc>, step: f64) -> Result<Data, QueryError> {
        self.retried(query, || async {
            let mut q =
                self.client.query_range(query, from.timestamp(), to.timestamp(), step).timeout(self.timeout_ms());
            if let Some(auth) = self.access.authorization() {
                q = q.header(reqwest::header::AUTHORIZATION, auth);
            }
            let r = q.post().await?;
            Ok(r.into_inner().0)
        })
        .await
    }

    /// The inventory at instant `t`: listed, declared and discovered services (discovery
    /// re-asked at most every `discover.every`), within `services.max`.
    pub async fn inventory_at(&self, t: DateTime<Utc>) -> Result<Inventory, QueryError> {
        let mut discovered = Vec::new();
        if let Some(d) = &self.services.discover {
            let cached = self.discovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            discovered = match cached {
                Some((at, ids)) if at.elapsed() < d.every => ids,
                _ => {
                    let labels = match self.instant(&d.query, t).await? {
                        Data::Vector(v) => v.into_iter().map(|s| s.into_inner().0).collect(),
                        Data::Matrix(m) => m.into_iter().map(|s| s.into_inner().0).collect(),
                        Data::Scalar(_) => Vec::new(),
                    };
                    let ids = discovered_ids(d, labels);
                    *self.discovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some((tokio::time::Instant::now(), ids.clone()));
                    ids
                }
            };
        }
        Ok(self.merge(discovered))
    }

    fn merge(&self, discovered: Vec<ServiceId>) -> Inventory {
        let listed: Vec<(ServiceId, Overrides)> =
            self.listed.iter().map(|id| (id.clone(), Overrides::default())).collect();
        let declared = self.declared.as_ref().map(|f| f()).unwrap_or_default();
        let mut inventory = Inventory::merge(&listed, &declared.services, &discovered, self.services.max);
        inventory.invalid = declared.refused;
        inventory
    }

    /// The services of [`Source::inventory_at`], sorted.
    pub async fn services_at(&self, t: DateTime<Utc>) -> Result<Vec<ServiceId>, QueryError> {
        Ok(self.inventory_at(t).await?.ids())
    }

    /// Listed services and every service discovered at some step of `[from, to]`.
    pub async fn services_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        grid: StepGrid,
    ) -> Result<Vec<ServiceId>, QueryError> {
        let mut discovered = Vec::new();
        if let Some(d) = &self.services.discover {
            let labels = match self.range(&d.query, from, to, grid.seconds()).await? {
                Data::Matrix(m) => m.into_iter().map(|s| s.into_inner().0).collect(),
                Data::Vector(v) => v.into_iter().map(|s| s.into_inner().0).collect(),
                Data::Scalar(_) => Vec::new(),
            };
            discovered = discovered_ids(d, labels);
        }
        Ok(self.merge(discovered).ids())
    }

    /// One row per service at step `t`: one instant query per feature. Fails only when
    /// Prometheus is unreachable.
    pub async fn rows_at(&self, t: DateTime<Utc>, services: &[ServiceId]) -> Result<Vec<FeatureRow>, QueryError> {
        let mut rows: Vec<FeatureRow> = services.iter().map(|s| FeatureRow::empty(t, s.clone())).collect();
        let index = std::sync::Arc::new(Index::new(services));
        let values: Vec<(Feature, Option<Placed>)> = futures::stream::iter(self.queries(services))
            .map(|(feature, query)| {
                let index = index.clone();
                async move {
                    let values = match self.instant(&query, t).await {
                        Ok(data) => index.instant(&query, data),
                        Err(e) => Err(e),
                    };
                    self.settle(values).map(|v| (feature, v))
                }
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect()
            .await?;
        for (feature, values) in values {
            for (i, value) in values.unwrap_or_default() {
                rows[i].set(feature, Some(value));
            }
        }
        Ok(rows)
    }

    /// One row per service and step of `[from, to]` on `grid`: one range query per
    /// feature and chunk of time. Fails only when Prometheus is unreachable.
    pub async fn rows_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        grid: StepGrid,
        services: &[ServiceId],
    ) -> Result<Vec<FeatureRow>, QueryError> {
        let steps: Vec<DateTime<Utc>> = grid.range(from, to).collect();
        if steps.is_empty() || services.is_empty() {
            return Ok(Vec::new());
        }
        let first_ms = steps[0].timestamp_millis();
        let step_ms = grid.delta().num_milliseconds();
        let mut rows: Vec<FeatureRow> = Vec::with_capacity(steps.len() * services.len());
        for t in &steps {
            rows.extend(services.iter().map(|s| FeatureRow::empty(*t, s.clone())));
        }
        let index = std::sync::Arc::new(Index::new(services));
        let queries = self.queries(services);
        let mut jobs = Vec::new();
        for (a, b) in self.chunks(steps.len(), services.len()) {
            jobs.extend(queries.iter().map(|(feature, query)| (*feature, query.clone(), steps[a], steps[b])));
        }
        let mut answers = futures::stream::iter(jobs)
            .map(|(feature, query, first, last)| {
                let index = index.clone();
                async move {
                    let values = match self.range(&query, first, last, grid.seconds()).await {
                        Ok(data) => index.range(&query, data),
                        Err(e) => Err(e),
                    };
                    self.settle(values).map(|v| (feature, v))
                }
            })
            .buffer_unordered(self.config.concurrency.max(1));
        while let Some(answer) = answers.next().await {
            let (feature, values) = answer?;
            for (i, ms, value) in values.unwrap_or_default() {
                let offset = ms - first_ms;
                // Prometheus answers on the grid asked for; anything else is not a step.
                if offset < 0 || offset % step_ms != 0 {
                    continue;
                }
                let Some(row) = rows.get_mut((offset / step_ms) as usize * services.len() + i) else { continue };
                row.set(feature, Some(value));
            }
        }
        Ok(rows)
    }

    /// Index ranges `[a, b]` of steps whose range queries stay under `max_points` and
    /// Prometheus' 11,000 steps per series.
    fn chunks(&self, steps: usize, services: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let per = (self.config.max_points / services.max(1)).clamp(1, 11_000);
        (0..steps).step_by(per).map(move |a| (a, (a + per).min(steps) - 1))
    }

    /// The rendered query of every feature for `services`' namespaces.
    fn queries(&self, services: &[ServiceId]) -> Vec<(Feature, String)> {
        if services.is_empty() {
            return Vec::new();
        }
        let namespaces: BTreeSet<&str> = services.iter().map(ServiceId::namespace).collect();
        let namespaces: Vec<&str> = namespaces.into_iter().collect();
        self.catalog.features().filter_map(|f| self.catalog.render(f, &namespaces).map(|q| (f, q))).collect()
    }

    /// Transient errors fail the step; permanent ones become a missing value.
    fn settle<T>(&self, result: Result<T, QueryError>) -> Result<Option<T>, QueryError> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "feature query failed; the value is stored as missing");
                Ok(None)
            }
        }
    }
}

/// (row, value) pairs of one feature's instant answer.
type Placed = Vec<(usize, f64)>;

/// Where each requested service's row is, to place the series of a grouped answer.
struct Index(HashMap<ServiceId, usize>);

impl Index {
    fn new(services: &[ServiceId]) -> Self {
        Self(services.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect())
    }

    /// The row of the service a series' labels name; `None` for services not asked for,
    /// and for series without both labels (pods `label_replace` could not map).
    fn row(&self, labels: &HashMap<String, String>) -> Option<usize> {
        let (ns, name) = (labels.get(SERVICE_LABELS[0])?, labels.get(SERVICE_LABELS[1])?);
        self.0.get(&ServiceId::new(ns.as_str(), name.as_str()).ok()?).copied()
    }

    /// (row, value) of an instant query's answer.
    fn instant(&self, query: &str, data: Data) -> Result<Vec<(usize, f64)>, QueryError> {
        let Data::Vector(v) = data else { return Err(not_grouped(query, &data)) };
        let mut out = Vec::with_capacity(v.len());
        for sample in v {
            let (labels, sample) = sample.into_inner();
            if let Some(i) = self.row(&labels) {
                out.push((i, sample.value()));
            }
        }
        dedup(query, &mut out, |(i, _)| *i);
        Ok(out)
    }

    /// (row, millisecond timestamp, value) of a range query's answer.
    fn range(&self, query: &str, data: Data) -> Result<Vec<(usize, i64, f64)>, QueryError> {
        let Data::Matrix(m) = data else { return Err(not_grouped(query, &data)) };
        let mut out = Vec::new();
        for series in m {
            let (labels, samples) = series.into_inner();
            if let Some(i) = self.row(&labels) {
                out.extend(samples.into_iter().map(|s| (i, (s.timestamp() * 1000.0).round() as i64, s.value())));
            }
        }
        dedup(query, &mut out, |(i, ms, _)| (*i, *ms));
        Ok(out)
    }
}

/// Two series for one service (a template that groups by more than the service's labels,
/// or two namespaces' worth of `service` labels): the service's value is unknown, so
/// both go (missing, not one of them at random).
fn dedup<T, K: Ord + Copy>(query: &str, values: &mut Vec<T>, key: impl Fn(&T) -> K) {
    values.sort_by_key(|v| key(v));
    let dupes: BTreeSet<K> = values.windows(2).filter(|w| key(&w[0]) == key(&w[1])).map(|w| key(&w[0])).collect();
    if !dupes.is_empty() {
        tracing::warn!(
            query,
            services = dupes.len(),
            "several series for one service; those values are stored as missing"
        );
        values.retain(|v| !dupes.contains(&key(v)));
    }
}

fn not_grouped(query: &str, data: &Data) -> QueryError {
    let what = match data {
        Data::Scalar(_) => "returned a scalar".to_owned(),
        Data::Vector(v) => format!("returned an instant vector of {} series", v.len()),
        Data::Matrix(m) => format!("returned a range vector of {} series", m.len()),
    };
    QueryError::NotGrouped { query: query.to_owned(), what }
}

fn discovered_ids(d: &Discovery, labels: Vec<HashMap<String, String>>) -> Vec<ServiceId> {
    let mut out = Vec::new();
    for l in labels {
        let (Some(ns), Some(name)) = (l.get(&d.namespace_label), l.get(&d.service_label)) else {
            tracing::warn!(labels = ?l, "a discovered series lacks the namespace or service label; skipped");
            continue;
        };
        match ServiceId::new(ns.as_str(), name.as_str()) {
            Ok(id) => out.push(id),
            Err(e) => tracing::warn!(error = %e, "a discovered service has an invalid name; skipped"),
        }
    }
    out
}
