//! Every storefront service through `app().oneshot(...)`, the order service against a real
//! product service on a loopback socket, and the safety properties: idempotent orders under
//! concurrent retries, no cross-user access, refused missing and forged tokens, passwords
//! never stored in clear, bad bodies answered with JSON errors naming the problem, internal
//! routes closed without the service credential, an instance's limits (queue timeout,
//! slow headers and bodies), login rate limits, and recommendations without the order
//! service.

use std::collections::BTreeMap;
use std::path::Path;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use storefront::authen::LoginSettings;
use storefront::common::app::Limits;
use storefront::common::auth::Keys;
use storefront::common::db::{Database, Db, PoolSettings};
use storefront::{Service, Settings};
use tower::ServiceExt;

const SECRET: &str = "test-secret-of-at-least-thirty-two-bytes";

fn settings(dir: &Path, urls: BTreeMap<&'static str, String>) -> Settings {
    Settings {
        database: Database::Embedded(dir.to_owned()),
        pool: PoolSettings::default(),
        limits: Limits::with_concurrency(16),
        keys: Keys::new(SECRET).unwrap(),
        urls,
        recommender_work: 100,
        login: LoginSettings::default(),
    }
}

async fn app(service: Service, settings: &Settings) -> Result<Router, storefront::StartError> {
    storefront::app(service, settings).await
}

async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn token(user: i64, name: &str) -> String {
    Keys::new(SECRET).unwrap().issue(user, name).unwrap()
}

/// Serves an app on a loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn authen_registers_logs_in_and_never_keeps_passwords_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(Service::Authen, &settings(dir.path(), BTreeMap::new())).await.unwrap();
    let creds = json!({"username": "alice", "password": "correct horse battery"});
    let (s, user) = call(&app, "POST", "/register", None, Some(creds.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let (s, _) = call(&app, "POST", "/register", None, Some(creds.clone())).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, login) = call(&app, "POST", "/login", None, Some(creds)).await;
    assert_eq!(s, StatusCode::OK);
    let t = login["token"].as_str().unwrap();
    let (s, me) = call(&app, "GET", "/verify", Some(t), None).await;
    assert_eq!((s, me["username"].as_str()), (StatusCode::OK, Some("alice")));
    let (s, _) =
        call(&app, "POST", "/login", None, Some(json!({"username": "alice", "password": "wrong password"}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, e) = call(&app, "POST", "/register", None, Some(json!({"username": "bob", "password": "short"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["error"].as_str().unwrap().contains("password"), "{e}");
    // The database holds an argon2id hash, never the password.
    let raw = std::fs::read(dir.path().join("authen.db")).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("correct horse battery"));
    let db =
        Db::open(Service::Authen, &Database::Embedded(dir.path().to_owned()), PoolSettings::default()).await.unwrap();
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(&db.pool).await.unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(Service::Profile, &settings(dir.path(), BTreeMap::new())).await.unwrap();
    let (s, e) = call(&app, "GET", "/profile", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(e["error"].as_str().unwrap().contains("missing Authorization"));
    let forged = Keys::new("another-secret-of-thirty-two-bytes!!").unwrap().issue(1, "mallory").unwrap();
    assert_eq!(call(&app, "GET", "/profile", Some(&forged), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/profile", Some("not.a.jwt"), None).await.0, StatusCode::UNAUTHORIZED);
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &storefront::common::auth::Claims {
            sub: 1,
            name: "old".into(),
            exp: 1_000_000,
            iss: storefront::common::auth::ISSUER.into(),
            aud: storefront::common::auth::AUDIENCE.into(),
        },
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(call(&app, "GET", "/profile", Some(&expired), None).await.0, StatusCode::UNAUTHORIZED);
    // Signed with the right secret, but for another audience or by another issuer.
    let claims = |iss: &str, aud: &str| storefront::common::auth::Claims {
        sub: 1,
        name: "alice".into(),
        exp: chrono::Utc::now().timestamp() + 3600,
        iss: iss.into(),
        aud: aud.into(),
    };
    for (iss, aud) in
        [("someone-else", storefront::common::auth::AUDIENCE), (storefront::common::auth::ISSUER, "another-app")]
    {
        let t = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims(iss, aud),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(call(&app, "GET", "/profile", Some(&t), None).await.0, StatusCode::UNAUTHORIZED, "{iss} {aud}");
    }
    assert!(Keys::new("only-twenty-four-bytes!!").is_err(), "secrets under 32 bytes are refused");
}

#[tokio::test]
async fn profile_is_always_ones_own_and_bodies_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(Service::Profile, &settings(dir.path(), BTreeMap::new())).await.unwrap();
    let (alice, bob) = (token(1, "alice"), token(2, "bob"));
    let (s, p) = call(&app, "GET", "/profile", Some(&alice), None).await;
    assert_eq!((s, p["display_name"].as_str()), (StatusCode::OK, Some("alice")));
    let update = json!({"display_name": "Alice A.", "email": "alice@example.com", "favourite_sport": "tennis"});
    let (s, p) = call(&app, "PUT", "/profile", Some(&alice), Some(update)).await;
    assert_eq!((s, p["email"].as_str()), (StatusCode::OK, Some("alice@example.com")));
    let (_, p) = call(&app, "GET", "/profile", Some(&bob), None).await;
    assert_eq!(p["display_name"], "bob", "bob sees his own profile, not alice's");
    let (s, e) = call(&app, "PUT", "/profile", Some(&bob), Some(json!({"display_name": "B", "role": "admin"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["error"].as_str().unwrap().contains("unknown field `role`"), "{e}");
    let (s, e) = call(&app, "PUT", "/profile", Some(&bob), Some(json!({"display_name": "B", "email": "nope"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["error"].as_str().unwrap().contains("email"), "{e}");
    // Not JSON, and too large.
    let req = Request::builder()
        .method("PUT")
        .uri("/profile")
        .header(header::AUTHORIZATION, format!("Bearer {bob}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let big = json!({"display_name": "x".repeat(20_000)});
    let (s, _) = call(&app, "PUT", "/profile", Some(&bob), Some(big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn product_lists_searches_and_shows_stock() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(Service::Product, &settings(dir.path(), BTreeMap::new())).await.unwrap();
    let (s, page) = call(&app, "GET", "/products?page=2&per_page=10", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    assert_eq!(page["items"][0]["id"], 11);
    assert_eq!(page["total"], 500);
    let (s, found) = call(&app, "GET", "/products/search?q=racket", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(found["total"].as_i64().unwrap() > 0);
    assert!(found["items"].as_array().unwrap().iter().all(|p| p["name"].as_str().unwrap().contains("Racket")));
    let (s, p) = call(&app, "GET", "/products/7", None, None).await;
    assert_eq!((s, p["id"].as_i64()), (StatusCode::OK, Some(7)));
    let (_, stock) = call(&app, "GET", "/products/7/stock", None, None).await;
    assert_eq!(stock["stock"], 1000);
    assert_eq!(call(&app, "GET", "/products/9999", None, None).await.0, StatusCode::NOT_FOUND);
    let (s, e) = call(&app, "GET", "/products?per_page=1000", None, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("per_page"));
}

#[tokio::test]
async fn booking_refuses_double_bookings_and_other_users_cancellations() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(Service::Booking, &settings(dir.path(), BTreeMap::new())).await.unwrap();
    let (alice, bob) = (token(1, "alice"), token(2, "bob"));
    let (s, f) = call(&app, "GET", "/facilities", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(f.as_array().unwrap().len() >= 3);
    let slot = json!({"facility_id": 1, "date": "2030-05-01", "hour": 18});
    let (s, booking) = call(&app, "POST", "/bookings", Some(&alice), Some(slot.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{booking}");
    let (s, e) = call(&app, "POST", "/bookings", Some(&bob), Some(slot)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (_, avail) = call(&app, "GET", "/facilities/1/availability?date=2030-05-01", None, None).await;
    assert!(!avail["free"].as_array().unwrap().contains(&json!(18)));
    let id = booking["id"].as_i64().unwrap();
    assert_eq!(call(&app, "DELETE", &format!("/bookings/{id}"), Some(&bob), None).await.0, StatusCode::NOT_FOUND);
    assert!(call(&app, "GET", "/bookings", Some(&bob), None).await.1.as_array().unwrap().is_empty());
    assert_eq!(call(&app, "DELETE", &format!("/bookings/{id}"), Some(&alice), None).await.0, StatusCode::NO_CONTENT);
    let (s, _) =
        call(&app, "POST", "/bookings", Some(&alice), Some(json!({"facility_id": 1, "date": "2030-13-01", "hour": 9})))
            .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) =
        call(&app, "POST", "/bookings", Some(&alice), Some(json!({"facility_id": 1, "date": "2030-05-01", "hour": 3})))
            .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(call(&app, "POST", "/bookings", None, Some(json!({}))).await.0, StatusCode::UNAUTHORIZED);
}

/// Product served for real, order and recommender through `oneshot`.
async fn order_stack(dir: &Path) -> (Router, Router, Router) {
    let product = app(Service::Product, &settings(dir, BTreeMap::new())).await.unwrap();
    let product_url = serve(product.clone()).await;
    let mut urls = BTreeMap::new();
    urls.insert("product", product_url);
    let order = app(Service::Order, &settings(dir, urls.clone())).await.unwrap();
    urls.insert("order", serve(order.clone()).await);
    let recommender = app(Service::Recommender, &settings(dir, urls)).await.unwrap();
    (product, order, recommender)
}

async fn place(order: &Router, token: &str, key: &str, items: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri("/orders")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(json!({ "items": items }).to_string()))
        .unwrap();
    let res = order.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_order_create_it_once_and_take_stock_once() {
    let dir = tempfile::tempdir().unwrap();
    let (product, order, _) = order_stack(dir.path()).await;
    let alice = token(1, "alice");
    let items = json!([{"product_id": 3, "quantity": 2}, {"product_id": 4, "quantity": 1}]);
    let attempts: Vec<_> = (0..12)
        .map(|_| {
            let (order, alice, items) = (order.clone(), alice.clone(), items.clone());
            tokio::spawn(async move { place(&order, &alice, "checkout-42", items).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for a in attempts {
        let (status, body) = a.await.unwrap();
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status} {body}");
        created += usize::from(status == StatusCode::CREATED);
        assert_eq!(body["status"], "placed");
        ids.insert(body["id"].as_i64().unwrap());
    }
    assert_eq!((ids.len(), created), (1, 1), "one order, created once");
    let (_, s3) = call(&product, "GET", "/products/3/stock", None, None).await;
    let (_, s4) = call(&product, "GET", "/products/4/stock", None, None).await;
    assert_eq!((s3["stock"].as_i64(), s4["stock"].as_i64()), (Some(998), Some(999)), "stock taken once");

    // Another key is another order; the list is one's own only.
    let (s, _) = place(&order, &alice, "checkout-43", json!([{"product_id": 3, "quantity": 1}])).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, mine) = call(&order, "GET", "/orders", Some(&alice), None).await;
    assert_eq!(mine.as_array().unwrap().len(), 2);
    let bob = token(2, "bob");
    assert!(call(&order, "GET", "/orders", Some(&bob), None).await.1.as_array().unwrap().is_empty());
    let id = ids.first().unwrap();
    assert_eq!(call(&order, "GET", &format!("/orders/{id}"), Some(&bob), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&order, "GET", &format!("/orders/{id}"), Some(&alice), None).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_refused_without_stock_or_key_and_recommendations_follow_baskets() {
    let dir = tempfile::tempdir().unwrap();
    let (product, order, recommender) = order_stack(dir.path()).await;
    let alice = token(1, "alice");
    let (s, body) =
        place(&order, &alice, "too-many", json!([{"product_id": 5, "quantity": 2}, {"product_id": 50, "quantity": 6}]))
            .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["status"], "rejected");
    assert!(body["detail"].as_str().unwrap().contains("product 50 has only 5 in stock"), "{body}");
    assert_eq!(call(&product, "GET", "/products/5/stock", None, None).await.1["stock"], 1000, "nothing taken");
    let req = Request::builder()
        .method("POST")
        .uri("/orders")
        .header(header::AUTHORIZATION, format!("Bearer {alice}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"items": [{"product_id": 1, "quantity": 1}]}).to_string()))
        .unwrap();
    assert_eq!(order.clone().oneshot(req).await.unwrap().status(), StatusCode::BAD_REQUEST, "no Idempotency-Key");

    for (i, basket) in [[10, 11], [10, 11], [10, 12]].iter().enumerate() {
        let items = json!([{"product_id": basket[0], "quantity": 1}, {"product_id": basket[1], "quantity": 1}]);
        assert_eq!(place(&order, &alice, &format!("b{i}"), items).await.0, StatusCode::CREATED);
    }
    let (s, recs) = call(&recommender, "GET", "/recommendations/10?limit=5", Some(&alice), None).await;
    assert_eq!(s, StatusCode::OK, "{recs}");
    let ids: Vec<i64> = recs.as_array().unwrap().iter().map(|r| r["product_id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [11, 12], "bought together twice ranks first");
    assert_eq!(call(&recommender, "GET", "/recommendations/10", None, None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_routes_counts_per_service_and_hides_internal_routes() {
    let dir = tempfile::tempdir().unwrap();
    let product_url = serve(app(Service::Product, &settings(dir.path(), BTreeMap::new())).await.unwrap()).await;
    let mut urls = BTreeMap::new();
    urls.insert("product", product_url);
    let gateway = app(Service::Gateway, &settings(dir.path(), urls)).await.unwrap();
    // Through a real socket: the gateway itself is served too.
    let base = serve(gateway).await;
    let http = reqwest::Client::new();
    let page: Value =
        http.get(format!("{base}/api/product/products?per_page=3")).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let missing = http.get(format!("{base}/api/product/products/9999")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let internal = http.post(format!("{base}/api/product/internal/reserve")).body("{}").send().await.unwrap();
    assert_eq!(internal.status(), StatusCode::NOT_FOUND, "internal routes are not exposed");
    let unknown = http.get(format!("{base}/api/nope/x")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"gateway_requests_total{service="product",status="200"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"gateway_requests_total{service="product",status="404"} 2"#), "{metrics}");
    assert!(metrics.contains("gateway_request_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("process_resident_memory_bytes"), "{metrics}");
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_service_exposes_health_and_request_metrics() {
    let dir = tempfile::tempdir().unwrap();
    for service in Service::ALL {
        let app = app(service, &settings(dir.path(), BTreeMap::new())).await.unwrap();
        assert_eq!(call(&app, "GET", "/healthz", None, None).await.0, StatusCode::OK, "{service:?}");
        assert_eq!(call(&app, "GET", "/readyz", None, None).await.0, StatusCode::OK, "{service:?}");
    }
    let app = app(Service::Product, &settings(dir.path(), BTreeMap::new())).await.unwrap();
    call(&app, "GET", "/products/1", None, None).await;
    let req = Request::builder().uri("/metrics").body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let text = String::from_utf8(axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(
        text.contains(r#"http_requests_total{service="product",route="/products/{id}",method="GET",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("http_requests_in_flight"), "{text}");
    // A counter named as Prometheus' convention has it (the storefront catalog reads
    // rate(process_cpu_seconds_total)), growing between scrapes, never going back.
    assert!(text.contains("# TYPE process_cpu_seconds counter"), "{text}");
    let cpu = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .unwrap_or_else(|| panic!("no process_cpu_seconds_total in {text}"))
            .parse()
            .unwrap()
    };
    let first = cpu(&text);
    // Burn some CPU, then scrape again.
    let mut x = 0u64;
    for i in 0..20_000_000u64 {
        x = x.wrapping_mul(31).wrapping_add(i);
    }
    std::hint::black_box(x);
    let req = Request::builder().uri("/metrics").body(Body::empty()).unwrap();
    let res = app.oneshot(req).await.unwrap();
    let text = String::from_utf8(axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(cpu(&text) >= first, "{first} then {text}");
}

#[tokio::test]
async fn a_process_serving_several_services_reports_its_cpu_and_memory_under_none_of_their_names() {
    // Under every name it would make each service's cpu_cores and memory_bytes the
    // whole process's: the features are left missing instead.
    let dir = tempfile::tempdir().unwrap();
    let free = prescale_testkit::tools::free_ports(2);
    let ports = BTreeMap::from([(Service::Product, free[0]), (Service::Profile, free[1])]);
    let s = settings(dir.path(), Settings::local_urls("127.0.0.1", &ports));
    let _servers = storefront::spawn_all(&s, "127.0.0.1", &ports, std::future::pending()).await.unwrap();
    let http = reqwest::Client::new();
    for port in ports.values() {
        let text = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(text.contains("prescale_build_info"), "{text}");
        assert!(!text.contains("process_cpu_seconds"), "{text}");
        assert!(!text.contains("process_resident_memory_bytes"), "{text}");
    }
    // One service in its process: both, its own.
    let alone = BTreeMap::from([(Service::Product, prescale_testkit::tools::free_port())]);
    let _server = storefront::spawn_all(&s, "127.0.0.1", &alone, std::future::pending()).await.unwrap();
    let text = http
        .get(format!("http://127.0.0.1:{}/metrics", alone[&Service::Product]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("process_cpu_seconds_total") && text.contains("process_resident_memory_bytes"), "{text}");
}

#[tokio::test]
async fn internal_routes_demand_the_service_credential() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), BTreeMap::new());
    let product = app(Service::Product, &s).await.unwrap();
    let reserve = json!({"key": "k", "items": [{"product_id": 1, "quantity": 20}]});
    let send = |credential: Option<&str>| {
        let mut req =
            Request::builder().method("POST").uri("/internal/reserve").header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = credential {
            req = req.header(storefront::common::auth::INTERNAL_HEADER, c);
        }
        product.clone().oneshot(req.body(Body::from(reserve.to_string())).unwrap())
    };
    assert_eq!(send(None).await.unwrap().status(), StatusCode::NOT_FOUND, "no credential: as if absent");
    assert_eq!(send(Some("guess")).await.unwrap().status(), StatusCode::NOT_FOUND);
    let user_token = token(1, "alice");
    assert_eq!(
        send(Some(&user_token)).await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "a user's token is no credential"
    );
    assert_eq!(call(&product, "GET", "/products/1/stock", None, None).await.1["stock"], 1000, "nothing taken");
    assert_eq!(send(Some(s.keys.internal_token())).await.unwrap().status(), StatusCode::OK);
    assert_eq!(call(&product, "GET", "/products/1/stock", None, None).await.1["stock"], 980);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_instance_answers_503_with_retry_after_instead_of_queueing_without_end() {
    use storefront::common::app::wrap;
    use storefront::common::metrics::Metrics;
    let slow = Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            "done"
        }),
    );
    let limits = Limits { queue_timeout: std::time::Duration::from_millis(200), ..Limits::with_concurrency(1) };
    let app = wrap(slow, Metrics::new("test", true, |_| {}), limits);
    let first = tokio::spawn(app.clone().oneshot(Request::builder().uri("/slow").body(Body::empty()).unwrap()));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let second = app.clone().oneshot(Request::builder().uri("/slow").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers().contains_key(header::RETRY_AFTER), "{:?}", second.headers());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "answered after the queue timeout, not the first request"
    );
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), BTreeMap::new());
    s.limits.body_timeout = std::time::Duration::from_millis(300);
    s.limits.header_timeout = std::time::Duration::from_millis(300);
    let product = app(Service::Product, &s).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(storefront::common::serve::serve(listener, product, s.limits.header_timeout, std::future::pending()));
    let started = std::time::Instant::now();
    // A body that never finishes: 408.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /products HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), c.read_to_end(&mut out)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&out));
    // Headers that never finish: the connection is closed.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /products HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), c.read_to_end(&mut out)).await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"), "{}", String::from_utf8_lossy(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_rate_limited_and_unknown_users_get_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), BTreeMap::new());
    s.login = LoginSettings { hash_permits: 1, per_user_per_minute: 3, per_address_per_minute: 1000 };
    let app = app(Service::Authen, &s).await.unwrap();
    let creds = json!({"username": "erin", "password": "correct horse battery"});
    assert_eq!(call(&app, "POST", "/register", None, Some(creds.clone())).await.0, StatusCode::CREATED);
    let (known, e1) =
        call(&app, "POST", "/login", None, Some(json!({"username": "erin", "password": "wrong password"}))).await;
    let (unknown, e2) =
        call(&app, "POST", "/login", None, Some(json!({"username": "nobody", "password": "wrong password"}))).await;
    assert_eq!((known, &e1), (unknown, &e2), "an unknown name is answered as a wrong password");
    assert_eq!(call(&app, "POST", "/login", None, Some(creds.clone())).await.0, StatusCode::OK);
    assert_eq!(call(&app, "POST", "/login", None, Some(creds.clone())).await.0, StatusCode::OK);
    // The fourth attempt for erin within the minute.
    let req = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(creds.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    // Another user is not affected.
    assert_eq!(
        call(&app, "POST", "/login", None, Some(json!({"username": "nobody", "password": "x"}))).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendations_survive_the_order_service_going_down_and_errors_hide_urls() {
    let dir = tempfile::tempdir().unwrap();
    let product = app(Service::Product, &settings(dir.path(), BTreeMap::new())).await.unwrap();
    let product_url = serve(product).await;
    let order = app(Service::Order, &settings(dir.path(), BTreeMap::from([("product", product_url)]))).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let order_url = format!("http://{}", listener.local_addr().unwrap());
    let order_server = tokio::spawn(async move { axum::serve(listener, order.clone()).await });
    let recommender =
        app(Service::Recommender, &settings(dir.path(), BTreeMap::from([("order", order_url.clone())]))).await.unwrap();
    let alice = token(1, "alice");
    let http = reqwest::Client::new();
    for (i, basket) in [[20, 21], [20, 21], [20, 22]].iter().enumerate() {
        let r = http
            .post(format!("{order_url}/orders"))
            .bearer_auth(&alice)
            .header("idempotency-key", format!("r{i}"))
            .json(
                &json!({"items": [{"product_id": basket[0], "quantity": 1}, {"product_id": basket[1], "quantity": 1}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let (s, before) = call(&recommender, "GET", "/recommendations/20", Some(&alice), None).await;
    assert_eq!(s, StatusCode::OK, "{before}");
    order_server.abort();
    let _ = order_server.await;
    tokio::time::sleep(storefront::recommender::REFRESH_EVERY + std::time::Duration::from_millis(100)).await;
    let (s, after) = call(&recommender, "GET", "/recommendations/20", Some(&alice), None).await;
    assert_eq!((s, &after), (StatusCode::OK, &before), "served from the counts learnt");

    // The gateway's answer for a dead upstream names the service, not its address.
    let gateway =
        app(Service::Gateway, &settings(dir.path(), BTreeMap::from([("order", order_url.clone())]))).await.unwrap();
    let (s, e) = call(&gateway, "GET", "/api/order/orders", Some(&alice), None).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{e}");
    let text = e.to_string();
    assert!(text.contains("order") && !text.contains("127.0.0.1") && !text.contains("http"), "{text}");
}

#[tokio::test]
async fn pages_beyond_any_offset_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(Service::Product, &settings(dir.path(), BTreeMap::new())).await.unwrap();
    let (s, e) = call(&app, "GET", &format!("/products?page={}&per_page=100", i64::MAX), None, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"].as_str().unwrap().contains("page"), "{e}");
}
