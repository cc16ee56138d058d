//! `make bench`: the storefront on this machine.
//!
//! 1. Closed loop, 16 concurrent clients for 5 s each: requests/s and p50/p99 latency of
//!    product listing (`GET /products`) on SQLite and on a real PostgreSQL, of order
//!    placement (`POST /orders`: the idempotency claim, the product service's reservation,
//!    the record) on both, and of login (`POST /login`, argon2id-bound).
//! 2. Open loop against one recommender instance (concurrency limit 4): offered load at
//!    rising shares of its measured capacity; p95 latency climbs once the offer exceeds
//!    what the instance serves, as a real pod's does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use storefront::authen::LoginSettings;
use storefront::common::app::Limits;
use storefront::common::auth::Keys;
use storefront::common::db::{Database, PoolSettings};
use storefront::{Service, Settings, app};

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Closed loop: `clients` loops sending `make()` requests for `secs`.
async fn closed_loop(
    label: &str,
    clients: usize,
    secs: f64,
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
) {
    let http = reqwest::Client::new();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, make) = (http.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                let r = make(&http).send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                r.bytes().await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by(f64::total_cmp);
    println!(
        "{label}: {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms ({clients} clients, {} requests)",
        all.len() as f64 / secs,
        pct(&all, 0.5),
        pct(&all, 0.99),
        all.len()
    );
}

/// Open loop: requests at `rate`/s for `secs`, whatever the answers' pace; p95 latency.
async fn open_loop(http: &reqwest::Client, url: &str, token: &str, rate: f64, secs: f64) -> (f64, f64, usize) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let n = (rate * secs) as usize;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tick.tick().await;
        let req = http.get(url).bearer_auth(token);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = req.send().await.map(|r| r.status().is_success()).unwrap_or(false);
            (t.elapsed().as_secs_f64() * 1e3, ok)
        }));
    }
    let (mut lat, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (ms, ok) = t.await.unwrap();
        // A failed request (timeout) still took that long from the user's side.
        failed += usize::from(!ok);
        lat.push(ms);
    }
    lat.sort_by(f64::total_cmp);
    (pct(&lat, 0.5), pct(&lat, 0.95), failed)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "bench-secret-of-at-least-thirty-two-bytes";
    let on = |database: Database| {
        move |concurrency, urls: BTreeMap<&'static str, String>| Settings {
            database: database.clone(),
            pool: PoolSettings::default(),
            limits: Limits::with_concurrency(concurrency),
            keys: Keys::new(secret).unwrap(),
            urls,
            recommender_work: 200_000,
            // The bench measures hashing, not the rate limits: one user, many attempts.
            login: LoginSettings {
                per_user_per_minute: 1 << 30,
                per_address_per_minute: 1 << 30,
                ..Default::default()
            },
        }
    };
    let settings = on(Database::Embedded(dir.path().to_owned()));

    let product = serve(app(Service::Product, &settings(64, BTreeMap::new())).await.unwrap()).await;
    let url = format!("{product}/products?page=3&per_page=20");
    closed_loop("product listing (SQLite)", 16, 5.0, Arc::new(move |h: &reqwest::Client| h.get(&url))).await;

    // The same, and order placement, on a real PostgreSQL (as in a cluster).
    let pg = prescale_testkit::postgres::Postgres::start();
    let on_pg = on(Database::Url(pg.url()));
    let pg_product = serve(app(Service::Product, &on_pg(64, BTreeMap::new())).await.unwrap()).await;
    let url = format!("{pg_product}/products?page=3&per_page=20");
    closed_loop("product listing (PostgreSQL)", 16, 5.0, Arc::new(move |h: &reqwest::Client| h.get(&url))).await;
    for (label, product, settings) in [
        ("SQLite", product.clone(), &settings as &dyn Fn(usize, BTreeMap<&'static str, String>) -> Settings),
        ("PostgreSQL", pg_product, &on_pg),
    ] {
        let order =
            serve(app(Service::Order, &settings(64, BTreeMap::from([("product", product)]))).await.unwrap()).await;
        let token = Keys::new(secret).unwrap().issue(7, "orders").unwrap();
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let url = format!("{order}/orders");
        closed_loop(
            &format!("order placement ({label}: claim, reservation, record)"),
            16,
            5.0,
            Arc::new(move |h: &reqwest::Client| {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                h.post(&url)
                    .bearer_auth(&token)
                    .header("idempotency-key", format!("bench-{i}"))
                    .json(&json!({"items": [{"product_id": 2 + i % 40, "quantity": 1}]}))
            }),
        )
        .await;
    }

    let authen = serve(app(Service::Authen, &settings(64, BTreeMap::new())).await.unwrap()).await;
    let creds = json!({"username": "bench", "password": "a long enough password"});
    reqwest::Client::new().post(format!("{authen}/register")).json(&creds).send().await.unwrap();
    let login = format!("{authen}/login");
    closed_loop("login (argon2id)", 16, 5.0, Arc::new(move |h: &reqwest::Client| h.post(&login).json(&creds))).await;

    // The recommender needs orders to learn from: a few baskets through a real order service.
    let mut urls = BTreeMap::new();
    urls.insert("product", product.clone());
    let order = serve(app(Service::Order, &settings(64, urls.clone())).await.unwrap()).await;
    urls.insert("order", order.clone());
    let token = Keys::new(secret).unwrap().issue(1, "bench").unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    for i in 0..200 {
        // Product 1 is bought with several others (the recommendations asked below score
        // each of them).
        let items = json!({"items": [{"product_id": 1 + i % 40, "quantity": 1}, {"product_id": 1 + (i + 1 + i / 5) % 40, "quantity": 1}]});
        let r = http
            .post(format!("{order}/orders"))
            .bearer_auth(&token)
            .header("idempotency-key", format!("k{i}"))
            .json(&items)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let recommender = serve(app(Service::Recommender, &settings(4, urls)).await.unwrap()).await;
    let rec_url = format!("{recommender}/recommendations/1?limit=10");
    let first: Vec<serde_json::Value> =
        http.get(&rec_url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert!(!first.is_empty(), "the recommender learnt from the orders");
    // Its capacity: a short closed loop at the concurrency limit.
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(3) {
        // Spawned, so the four are in flight together (a request future does nothing
        // until polled).
        let batch: Vec<_> = (0..4).map(|_| tokio::spawn(http.get(&rec_url).bearer_auth(&token).send())).collect();
        for r in batch {
            r.await.unwrap().unwrap();
            served += 1;
        }
    }
    let capacity = served as f64 / started.elapsed().as_secs_f64();
    println!("recommender instance (concurrency limit 4): capacity about {capacity:.0} requests/s");
    for share in [0.25, 0.5, 0.75, 1.0, 1.25, 1.5] {
        let (p50, p95, failed) = open_loop(&http, &rec_url, &token, capacity * share, 4.0).await;
        println!(
            "  offered {:>3.0}% of capacity ({:>5.0} requests/s): p50 {p50:>7.1} ms, p95 {p95:>7.1} ms, {failed} failed",
            share * 100.0,
            capacity * share
        );
    }
}
