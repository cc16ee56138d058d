//! The storefront tried as a hostile or unlucky user would, through the real gateway of a
//! `storefront all --dev` process: path spellings that aim at internal routes (listed ones
//! and generated ones), one slot booked under many spellings of its date, an
//! idempotency key reused with another body, an order whose client goes away mid-way, and
//! clients that never finish sending their bodies.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Client, Storefront, raw};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use storefront::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RESERVE: &str = r#"{"key":"k","items":[{"product_id":1,"quantity":20}]}"#;

/// The internal routes' request counts in a service's `/metrics` (none must appear).
async fn internal_requests(port: u16) -> Vec<String> {
    let (_, metrics) = raw(port, "GET", "/metrics", &[], "").await.unwrap();
    metrics.lines().filter(|l| l.contains("route=\"/internal")).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_a_path_reaches_an_internal_route() {
    let dir = tempfile::tempdir().unwrap();
    let sf = Storefront::dev(dir.path()).await;
    let gw = sf.port(Service::Gateway);
    let json = [("Content-Type", "application/json")];
    for target in [
        "/api/product/internal/reserve",
        "/api/product/x/%2e%2e/internal/reserve",
        "/api/product/x/../internal/reserve",
        "/api/product/./internal/reserve",
        "/api/product/x/..%2finternal/reserve",
        "/api/product/x\\..\\internal/reserve",
        "/api/product/%2e/internal/reserve",
    ] {
        let (status, body) = raw(gw, "POST", target, &json, RESERVE).await.unwrap();
        assert!(!(200..300).contains(&status), "POST {target}: {status} {body}");
    }
    for target in [
        "/api/order/internal/baskets",
        "/api/order/./internal/baskets",
        "/api/order/x/%2E%2E/internal/baskets",
        "/api/order/.%2finternal/baskets",
        "/api/order/x/..%2finternal/baskets",
        "/api/order/x/%252e%252e/internal/baskets",
    ] {
        let (status, body) = raw(gw, "GET", target, &[], "").await.unwrap();
        assert!(!(200..300).contains(&status), "GET {target}: {status} {body}");
    }

    // Generated: any mix of words, dots, encodings and slashes after a service's prefix.
    let pieces = prop::sample::select(vec![
        "x",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2e%2e",
        ".%2e",
        "%2E.",
        "%2f",
        "%2F",
        "..%2f",
        ".%2F",
        "\\",
        "%5c",
        "%5C",
        "internal",
        "%69nternal",
        "INTERNAL",
        "reserve",
        "baskets",
        "products",
        "orders",
        "%252e%252e",
        "%00",
        "",
    ]);
    let separators = prop::sample::select(vec!["/", "//", "/./", "/../", "\\"]);
    let prefixes = prop::sample::select(vec!["/api/product", "/api/order", "/api//product", "/api/product/x", "/api"]);
    let strategy = (prefixes, prop::collection::vec((separators, pieces), 1..7)).prop_map(|(prefix, parts)| {
        let mut path = prefix.to_owned();
        for (sep, piece) in parts {
            path.push_str(sep);
            path.push_str(piece);
        }
        path
    });
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
        runner.run(&strategy, |path| {
            for method in ["POST", "GET"] {
                let (status, body) = handle
                    .block_on(raw(gw, method, &path, &[("Content-Type", "application/json")], RESERVE))
                    .map_err(|e| TestCaseError::fail(format!("{method} {path}: {e}")))?;
                // Public routes that answer 2xx without a token exist (the catalogue), but
                // none of them takes a body that reserves stock.
                let public_read = method == "GET" && path.contains("products");
                prop_assert!(public_read || !(200..300).contains(&status), "{method} {path}: {status} {body}");
            }
            Ok(())
        })
    })
    .await
    .unwrap();
    outcome.unwrap();

    let client = Client::default();
    assert_eq!(client.stock(&sf.gateway(), 1).await, 1000, "no stock was taken");
    assert_eq!(internal_requests(sf.port(Service::Product)).await, Vec::<String>::new());
    assert_eq!(internal_requests(sf.port(Service::Order)).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_day_books_one_slot() {
    let dir = tempfile::tempdir().unwrap();
    let sf = Storefront::dev(dir.path()).await;
    let (client, gw) = (Client::default(), sf.gateway());
    client.register(&gw, "alice").await;
    let token = client.login(&gw, "alice").await;
    let mut statuses = Vec::new();
    for date in ["2030-05-01", "2030-5-1", " 2030-05-01", "2030-05-1", "+2030-05-01"] {
        let slot = json!({"facility_id": 1, "date": date, "hour": 10});
        let (s, body) = client.send("POST", &format!("{gw}/api/booking/bookings"), Some(&token), &[], Some(slot)).await;
        statuses.push(s);
        if s == 201 {
            assert_eq!(body["date"], "2030-05-01", "stored in its canonical spelling");
        }
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409]);
    let (_, mine) = client.send("GET", &format!("{gw}/api/booking/bookings"), Some(&token), &[], None).await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    let (_, free) =
        client.send("GET", &format!("{gw}/api/booking/facilities/1/availability?date=2030-5-1"), None, &[], None).await;
    assert!(!free["free"].as_array().unwrap().contains(&json!(10)), "{free}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_with_another_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sf = Storefront::dev(dir.path()).await;
    let (client, gw) = (Client::default(), sf.gateway());
    client.register(&gw, "bob").await;
    let token = client.login(&gw, "bob").await;
    let url = format!("{gw}/api/order/orders");
    let key = [("Idempotency-Key", "k1")];
    let first = json!({"items": [{"product_id": 3, "quantity": 1}]});
    let other = json!({"items": [{"product_id": 4, "quantity": 2}]});
    let (s, placed) = client.send("POST", &url, Some(&token), &key, Some(first.clone())).await;
    assert_eq!(s, 201, "{placed}");
    let (s, refused) = client.send("POST", &url, Some(&token), &key, Some(other)).await;
    assert_eq!(s, 422, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("k1"), "names the key: {refused}");
    let (s, again) = client.send("POST", &url, Some(&token), &key, Some(first)).await;
    assert_eq!((s, &again["id"]), (200, &placed["id"]), "the same body still gets its order back");
    assert_eq!(client.stock(&gw, 4).await, 1000, "the refused body took nothing");
    assert_eq!(client.stock(&gw, 3).await, 999, "the order took its stock once");
}

/// A TCP proxy to `target` that holds (never forwards, never answers) the first
/// connection whose request is a stock reservation, and forwards everything else.
async fn stalling_proxy(target: u16) -> (u16, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 4096];
            let n = inbound.read(&mut head).await.unwrap_or(0);
            head.truncate(n);
            if String::from_utf8_lossy(&head).contains("/internal/reserve") && !flag.swap(true, Ordering::SeqCst) {
                held.push(inbound);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                if outbound.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, stalled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_abandoned_mid_way_leaves_its_key_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let product = prescale_testkit::tools::free_port();
    let (proxy, stalled) = stalling_proxy(product).await;
    let args: Vec<String> = [
        "--dev",
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--upstream",
        &format!("product=http://127.0.0.1:{proxy}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sf = Storefront::start(dir.path(), &args, &[(Service::Product, product)]).await;
    let (client, gw) = (Client::default(), sf.gateway());
    client.register(&gw, "carol").await;
    let token = client.login(&gw, "carol").await;
    let url = format!("{gw}/api/order/orders");
    let body = json!({"items": [{"product_id": 7, "quantity": 3}]});

    // The client gives up while the order service waits on the product service.
    let impatient = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let gave_up =
        impatient.post(&url).bearer_auth(&token).header("Idempotency-Key", "basket-1").json(&body).send().await;
    assert!(gave_up.is_err(), "the first attempt should stall: {gave_up:?}");
    assert!(stalled.load(Ordering::SeqCst), "the reservation was held by the proxy");

    // Its retries get the order placed promptly (a 503 says the abandoned claim is being
    // released; retrying then succeeds), not after waiting on a dead claim.
    let started = Instant::now();
    let (status, order) = loop {
        let (s, o) =
            client.send("POST", &url, Some(&token), &[("Idempotency-Key", "basket-1")], Some(body.clone())).await;
        if s != 503 || started.elapsed() > Duration::from_secs(8) {
            break (s, o);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 201, "{order}");
    assert!(started.elapsed() < Duration::from_secs(5), "retrying took {:?}", started.elapsed());
    assert_eq!(client.stock(&gw, 7).await, 997, "stock taken once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stalling_their_bodies_do_not_starve_others() {
    let dir = tempfile::tempdir().unwrap();
    let sf = Storefront::dev(dir.path()).await;
    let gw = sf.port(Service::Gateway);
    let mut stalled = Vec::new();
    for _ in 0..64 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw)).await.unwrap();
        s.write_all(
            b"POST /api/order/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let started = Instant::now();
    let res = client.get(format!("{}/api/product/products?per_page=1", sf.gateway())).send().await;
    let took = started.elapsed();
    assert_eq!(res.map(|r| r.status().as_u16()).ok(), Some(200));
    assert!(took < Duration::from_secs(1), "another client's request took {took:?}");
    drop(stalled);
}
