//! Feature rows from Prometheus: the catalog's queries for each service, at one instant
//! (live steps) or over a range of steps (backfill and gap filling).
//!
//! An instant query at step `t` and a range query whose grid contains `t` evaluate the
//! same PromQL at the same time, so a step filled later from a range query holds the
//! values the live step would have had. Transport failures, timeouts and Prometheus'
//! own overload answers are *transient*: they are retried with backoff and, if they
//! persist, fail the whole step so that it is filled later. A query Prometheus rejects,
//! or one that returns more than one series, is a catalog mistake: the feature is stored
//! as missing, logged and counted, and the step goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::{Feature, FeatureRow, ServiceId, StepGrid};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_http_query::response::Data;
use prometheus_http_query::{Client, Error as PromError};
use serde::{Deserialize, Serialize};

use super::catalog::Catalog;
use crate::config::FieldError;

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
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9090".into(),
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(250),
            concurrency: 16,
        }
    }
}

/// The `[services]` section: which services get a row each step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    /// Services always sampled, as `namespace/name`.
    pub list: Vec<String>,
    /// Services found by a PromQL query, re-evaluated every step.
    pub discover: Option<Discovery>,
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
        if self.list.is_empty() && self.discover.is_none() {
            return Err(FieldError::new(
                "services",
                "list some services (services.list) or discover them (services.discover)",
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
    /// Prometheus refused the query; retrying will not help.
    #[error("Prometheus rejected `{query}`: {message}")]
    Rejected {
        /// The query.
        query: String,
        /// Prometheus' explanation.
        message: String,
    },
    /// A feature query returned several series where one value was expected.
    #[error("`{query}` returned {count} series; a feature query must aggregate to at most one")]
    NotOneSeries {
        /// The query.
        query: String,
        /// How many series came back.
        count: usize,
    },
}

impl QueryError {
    /// Whether the failure says nothing about the query itself.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueryError::Unreachable { .. })
    }
}

fn classify(query: &str, err: PromError) -> QueryError {
    let message = err.to_string();
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
    config: PrometheusConfig,
    catalog: Catalog,
    services: ServicesConfig,
    listed: Vec<ServiceId>,
    errors: Counter,
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
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| FieldError::new("prometheus", format!("building the HTTP client: {e}")))?;
        let client = Client::from(http, &config.url)
            .map_err(|e| FieldError::new("prometheus.url", format!("{:?} is not a URL: {e}", config.url)))?;
        let listed = services.listed()?;
        Ok(Self { client, config, catalog, services, listed, errors })
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
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
            let r = self.client.query(query).at(at.timestamp()).timeout(self.timeout_ms()).get().await?;
            Ok(r.into_inner().0)
        })
        .await
    }

    async fn range(&self, query: &str, from: DateTime<Utc>, to: DateTime<Utc>, step: f64) -> Result<Data, QueryError> {
        self.retried(query, || async {
            let r = self
                .client
                .query_range(query, from.timestamp(), to.timestamp(), step)
                .timeout(self.timeout_ms())
                .post()
                .await?;
            Ok(r.into_inner().0)
        })
        .await
    }

    /// Listed and discovered services at instant `t`, sorted.
    pub async fn services_at(&self, t: DateTime<Utc>) -> Result<Vec<ServiceId>, QueryError> {
        let mut all: BTreeSet<ServiceId> = self.listed.iter().cloned().collect();
        if let Some(d) = &self.services.discover {
            let labels = match self.instant(&d.query, t).await? {
                Data::Vector(v) => v.into_iter().map(|s| s.into_inner().0).collect(),
                Data::Matrix(m) => m.into_iter().map(|s| s.into_inner().0).collect(),
                Data::Scalar(_) => Vec::new(),
            };
            all.extend(discovered(d, labels));
        }
        Ok(all.into_iter().collect())
    }

    /// Listed services and every service discovered at some step of `[from, to]`.
    pub async fn services_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        grid: StepGrid,
    ) -> Result<Vec<ServiceId>, QueryError> {
        let mut all: BTreeSet<ServiceId> = self.listed.iter().cloned().collect();
        if let Some(d) = &self.services.discover {
            let labels = match self.range(&d.query, from, to, grid.seconds()).await? {
                Data::Matrix(m) => m.into_iter().map(|s| s.into_inner().0).collect(),
                Data::Vector(v) => v.into_iter().map(|s| s.into_inner().0).collect(),
                Data::Scalar(_) => Vec::new(),
            };
            all.extend(discovered(d, labels));
        }
        Ok(all.into_iter().collect())
    }

    /// One row per service at step `t`. Fails only when Prometheus is unreachable.
    pub async fn rows_at(&self, t: DateTime<Utc>, services: &[ServiceId]) -> Result<Vec<FeatureRow>, QueryError> {
        let jobs = self.jobs(services);
        let values: Vec<(usize, Feature, Option<f64>)> = futures::stream::iter(jobs)
            .map(|(i, feature, query)| async move {
                let value = match self.instant(&query, t).await {
                    Ok(data) => one_value(&query, data),
                    Err(e) => Err(e),
                };
                self.settle(value).map(|v| (i, feature, v))
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect()
            .await?;
        let mut rows: Vec<FeatureRow> = services.iter().map(|s| FeatureRow::empty(t, s.clone())).collect();
        for (i, feature, value) in values {
            rows[i].set(feature, value);
        }
        Ok(rows)
    }

    /// One row per service and step of `[from, to]` on `grid`. Fails only when
    /// Prometheus is unreachable.
    pub async fn rows_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        grid: StepGrid,
        services: &[ServiceId],
    ) -> Result<Vec<FeatureRow>, QueryError> {
        let steps: Vec<DateTime<Utc>> = grid.range(from, to).collect();
        let (Some(first), Some(last)) = (steps.first().copied(), steps.last().copied()) else {
            return Ok(Vec::new());
        };
        let jobs = self.jobs(services);
        let series: Vec<(usize, Feature, BTreeMap<i64, f64>)> = futures::stream::iter(jobs)
            .map(|(i, feature, query)| async move {
                let values = match self.range(&query, first, last, grid.seconds()).await {
                    Ok(data) => series_values(&query, data),
                    Err(e) => Err(e),
                };
                self.settle(values).map(|v| (i, feature, v.unwrap_or_default()))
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect()
            .await?;
        let mut rows = Vec::with_capacity(steps.len() * services.len());
        let mut by_service: Vec<Vec<(Feature, BTreeMap<i64, f64>)>> = vec![Vec::new(); services.len()];
        for (i, feature, values) in series {
            by_service[i].push((feature, values));
        }
        for t in &steps {
            for (i, service) in services.iter().enumerate() {
                let mut row = FeatureRow::empty(*t, service.clone());
                for (feature, values) in &by_service[i] {
                    row.set(*feature, values.get(&t.timestamp_millis()).copied());
                }
                rows.push(row);
            }
        }
        Ok(rows)
    }

    fn jobs(&self, services: &[ServiceId]) -> Vec<(usize, Feature, String)> {
        let mut jobs = Vec::new();
        for (i, service) in services.iter().enumerate() {
            for feature in self.catalog.features() {
                if let Some(q) = self.catalog.render(feature, service) {
                    jobs.push((i, feature, q));
                }
            }
        }
        jobs
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

fn discovered(d: &Discovery, labels: Vec<std::collections::HashMap<String, String>>) -> Vec<ServiceId> {
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

/// The value of an instant query: nothing, one series or a scalar.
fn one_value(query: &str, data: Data) -> Result<f64, QueryError> {
    match data {
        Data::Scalar(s) => Ok(s.value()),
        Data::Vector(v) if v.len() == 1 => Ok(v[0].sample().value()),
        Data::Vector(v) if v.is_empty() => Ok(f64::NAN),
        Data::Vector(v) => Err(QueryError::NotOneSeries { query: query.into(), count: v.len() }),
        Data::Matrix(m) => Err(QueryError::NotOneSeries { query: query.into(), count: m.len() }),
    }
}

/// The samples of a range query by millisecond timestamp.
fn series_values(query: &str, data: Data) -> Result<BTreeMap<i64, f64>, QueryError> {
    let samples = match data {
        Data::Matrix(m) if m.is_empty() => return Ok(BTreeMap::new()),
        Data::Matrix(m) if m.len() == 1 => m.into_iter().next().map(|s| s.into_inner().1).unwrap_or_default(),
        Data::Matrix(m) => return Err(QueryError::NotOneSeries { query: query.into(), count: m.len() }),
        Data::Vector(v) => return Err(QueryError::NotOneSeries { query: query.into(), count: v.len() }),
        Data::Scalar(s) => vec![s],
    };
    Ok(samples.into_iter().map(|s| ((s.timestamp() * 1000.0).round() as i64, s.value())).collect())
}
