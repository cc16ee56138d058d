//! `storefront`: the microservices Prescale ships with and scales in demos and tests.
//!
//! A gateway and six services (authen, booking, order, product, profile, recommender)
//! that do real work per request (argon2id hashing, database transactions, similarity
//! scoring), expose Prometheus metrics, and slow down when an instance is overloaded (a
//! concurrency limit per instance queues the rest), so that the collector records
//! realistic features. Every replica of a service shares one database (PostgreSQL in a
//! cluster; embedded SQLite for development), so the storefront can really be scaled.
//!
//! - [`common`]: JSON errors, metrics, an instance's limits, the database, JWTs and the
//!   service credential, serving;
//! - one module per service, each with its handlers and routes (schemas are migrations in
//!   `services/migrations/`);
//! - [`Service`], [`Settings`], [`app`] and [`spawn_all`]: building and serving any
//!   service's app, as `storefront run <service>` and `storefront all` do.

pub mod authen;
pub mod booking;
pub mod common;
pub mod gateway;
pub mod order;
pub mod product;
pub mod profile;
pub mod recommender;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

use crate::common::app::{Limits, wrap};
use crate::common::auth::{Keys, WeakSecret};
use crate::common::db::{Database, Db, DbError, PoolSettings};
use crate::common::metrics::Metrics;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its database could not be reached, migrated or seeded.
    #[error("{service}: database {location}: {source}")]
    Db {
        /// The service.
        service: &'static str,
        /// The database (a URL's password masked).
        location: String,
        /// What failed.
        #[source]
        source: DbError,
    },
    /// The JWT secret is unusable.
    #[error(transparent)]
    Keys(#[from] WeakSecret),
    /// The HTTP client for upstream calls could not be built.
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// Its port could not be bound.
    #[error("{service}: binding {addr}: {source}")]
    Bind {
        /// The service.
        service: &'static str,
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Service {
    /// The ingress.
    Gateway,
    /// Users and tokens.
    Authen,
    /// Facility slots.
    Booking,
    /// Orders.
    Order,
    /// The catalogue.
    Product,
    /// Profiles.
    Profile,
    /// Recommendations.
    Recommender,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 7] = [
        Service::Gateway,
        Service::Authen,
        Service::Booking,
        Service::Order,
        Service::Product,
        Service::Profile,
        Service::Recommender,
    ];

    /// Its name (in routes, metrics and data files).
    pub fn name(self) -> &'static str {
        match self {
            Service::Gateway => "gateway",
            Service::Authen => "authen",
            Service::Booking => "booking",
            Service::Order => "order",
            Service::Product => "product",
            Service::Profile => "profile",
            Service::Recommender => "recommender",
        }
    }

    /// The service of a name.
    pub fn named(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Its default port.
    pub fn default_port(self) -> u16 {
        match self {
            Service::Gateway => 8080,
            Service::Authen => 4000,
            Service::Booking => 4001,
            Service::Order => 4002,
            Service::Product => 4003,
            Service::Profile => 4004,
            Service::Recommender => 4005,
        }
    }
}

/// What every service needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the data is: SQLite files in a folder, or a shared PostgreSQL.
    pub database: Database,
    /// Connection pool limits.
    pub pool: PoolSettings,
    /// Per-instance limits.
    pub limits: Limits,
    /// JWT keys (shared secret) and the service credential derived from it.
    pub keys: Keys,
    /// Base URL of each service, for the gateway and service-to-service calls.
    pub urls: BTreeMap<&'static str, String>,
    /// The recommender's re-ranking rounds per candidate.
    pub recommender_work: u32,
    /// Login hashing and rate limits.
    pub login: authen::LoginSettings,
}

impl Settings {
    /// Every service at `http://{host}:{port}` with the given ports.
    pub fn local_urls(host: &str, ports: &BTreeMap<Service, u16>) -> BTreeMap<&'static str, String> {
        Service::ALL
            .iter()
            .map(|s| (s.name(), format!("http://{host}:{}", ports.get(s).copied().unwrap_or(s.default_port()))))
            .collect()
    }

    fn url(&self, s: Service) -> String {
        self.urls.get(s.name()).cloned().unwrap_or_else(|| format!("http://127.0.0.1:{}", s.default_port()))
    }

    async fn db(&self, s: Service) -> Result<Db, StartError> {
        Db::open(s, &self.database, self.pool).await.map_err(|source| StartError::Db {
            service: s.name(),
            location: self.database.display(s),
            source,
        })
    }

    /// A local development storefront: the public development secret, SQLite files in
    /// `data_dir`, and every service at `http://127.0.0.1:<port>` with `ports` (tests and
    /// demos).
    pub fn dev(
        data_dir: impl Into<PathBuf>,
        ports: &BTreeMap<Service, u16>,
        concurrency: usize,
    ) -> Result<Self, StartError> {
        Ok(Self {
            database: Database::Embedded(data_dir.into()),
            pool: PoolSettings::default(),
            limits: Limits::with_concurrency(concurrency),
            keys: Keys::new(common::auth::DEV_SECRET)?,
            urls: Self::local_urls("127.0.0.1", ports),
            recommender_work: 1000,
            login: authen::LoginSettings::default(),
        })
    }
}

/// An HTTP client for calls between services: bounded in time, so a slow service makes its
/// callers fail rather than hang.
fn client(timeout: Duration) -> Result<reqwest::Client, StartError> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(64)
        // Shorter than the services' idle keep-alive (their header timeout, 30 s by
        // default), so a pooled connection is dropped here before the server closes it.
        .pool_idle_timeout(Duration::from_secs(15))
        .build()?)
}

/// Serves the services in `ports` in this process, each on `host` at its port, until
/// `shutdown` resolves; returns once all listen, with a handle per server (dropping them
/// leaves the servers running). What `storefront run` and `storefront all` serve, and
/// what tests and demos start when they want a storefront without a subprocess.
pub async fn spawn_all(
    settings: &Settings,
    host: &str,
    ports: &BTreeMap<Service, u16>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Vec<JoinHandle<std::io::Result<()>>>, StartError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    // Several services in one process share its CPU and memory: no service reports them.
    let alone = ports.len() == 1;
    for (service, port) in ports {
        let app = app_in(*service, settings, alone).await?;
        let addr = format!("{host}:{port}");
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|source| StartError::Bind {
            service: service.name(),
            addr: addr.clone(),
            source,
        })?;
        tracing::info!(service = service.name(), %addr, "listening");
        let mut stopped = stopped.clone();
        servers.push(tokio::spawn(common::serve::serve(listener, app, settings.limits.header_timeout, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    Ok(servers)
}

/// The full app of one service (routes, health, metrics, limits), its database reached,
/// migrated and seeded; the process serves it alone (see [`app_in`]).
pub async fn app(service: Service, settings: &Settings) -> Result<Router, StartError> {
    app_in(service, settings, true).await
}

/// [`app`], saying whether the process serves this service `alone`: only then does it
/// export the process's CPU and memory as the service's.
pub async fn app_in(service: Service, settings: &Settings, alone: bool) -> Result<Router, StartError> {
    let keys = settings.keys.clone();
    let mut ingress = None;
    let metrics = Metrics::new(service.name(), alone, |registry| {
        if service == Service::Gateway {
            ingress = Some(gateway::IngressMetrics::new(registry));
        }
    });
    let seed_error = |source: sqlx::Error| StartError::Db {
        service: service.name(),
        location: settings.database.display(service),
        source: DbError::Sql(source),
    };
    let routes = match service {
        Service::Gateway => {
            let upstreams =
                Service::ALL.iter().filter(|s| **s != Service::Gateway).map(|s| (*s, settings.url(*s))).collect();
            let metrics = ingress.expect("Metrics::new registers the gateway's ingress metrics");
            gateway::routes(gateway::GatewayState { upstreams, http: client(Duration::from_secs(30))?, metrics })
        }
        Service::Authen => authen::routes(authen::AuthenState::new(settings.db(service).await?, keys, &settings.login)),
        Service::Booking => {
            let db = settings.db(service).await?;
            booking::seed(&db).await.map_err(seed_error)?;
            booking::routes(booking::BookingState { db, keys })
        }
        Service::Order => order::routes(order::OrderState {
            db: settings.db(service).await?,
            keys,
            product_url: settings.url(Service::Product),
            http: client(order::PRODUCT_TIMEOUT)?,
        }),
        Service::Product => {
            let db = settings.db(service).await?;
            product::seed(&db).await.map_err(seed_error)?;
            product::routes(product::ProductState { db, keys })
        }
        Service::Profile => profile::routes(profile::ProfileState { db: settings.db(service).await?, keys }),
        Service::Recommender => recommender::routes(recommender::RecommenderState {
            keys,
            order_url: settings.url(Service::Order),
            http: client(recommender::ORDER_TIMEOUT)?,
            counts: Arc::new(std::sync::RwLock::new(recommender::Counts::default())),
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
            work: settings.recommender_work,
        }),
    };
    Ok(wrap(routes, metrics, settings.limits))
}
