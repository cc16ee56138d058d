//! The storefront scaled out: two `storefront all` processes on different ports sharing
//! one real PostgreSQL (a fresh cluster per test, started with `initdb` and `pg_ctl` on a
//! free port). Both start at once, so their migrations race under the migration lock; a
//! user registered through one logs in through the other, an order placed through one is
//! listed by the other, concurrent retries of one order spread over both create it once
//! and take stock once, and k6's journeys across both gateways pass every check.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{Client, Storefront};
use prescale_testkit::postgres::Postgres;
use prescale_testkit::tools::k6;
use serde_json::json;

const SECRET: &str = "a-test-secret-shared-by-both-processes";

async fn pair(pg: &Postgres, dir: &Path) -> (Storefront, Storefront) {
    let args: Vec<String> = ["--database-url", &pg.url(), "--jwt-secret", SECRET, "--db-max-connections", "6"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    tokio::join!(Storefront::start(dir, &args, &[]), Storefront::start(dir, &args, &[]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_users_orders_and_stock() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(&pg, dir.path()).await;
    let (ga, gb) = (a.gateway(), b.gateway());
    let client = Client::default();

    // One user, whichever process answers.
    let id = client.register(&ga, "dana").await;
    let token = client.login(&gb, "dana").await;
    let (s, me) = client.send("GET", &format!("{ga}/api/authen/verify"), Some(&token), &[], None).await;
    assert_eq!((s, me["id"].as_i64()), (200, Some(id)), "{me}");
    let (s, _) =
        client.send("POST", &format!("{gb}/api/authen/register"), None, &[], Some(common::creds("dana"))).await;
    assert_eq!(s, 409, "the name is taken in the one users table");
    let mut ids = BTreeSet::from([id]);
    for i in 0..6 {
        let gateway = if i % 2 == 0 { &ga } else { &gb };
        assert!(
            ids.insert(client.register(gateway, &format!("user-{i}")).await),
            "user ids are unique across processes"
        );
    }

    // An order placed through one is listed by the other.
    let key = [("Idempotency-Key", "first")];
    let (s, order) = client
        .send(
            "POST",
            &format!("{ga}/api/order/orders"),
            Some(&token),
            &key,
            Some(json!({"items": [{"product_id": 5, "quantity": 1}]})),
        )
        .await;
    assert_eq!(s, 201, "{order}");
    let (_, listed) = client.send("GET", &format!("{gb}/api/order/orders"), Some(&token), &[], None).await;
    assert_eq!(listed[0]["id"], order["id"], "{listed}");

    // Twelve concurrent retries of one order over both processes: one order, stock once.
    let before = client.stock(&ga, 11).await;
    let body = json!({"items": [{"product_id": 11, "quantity": 2}, {"product_id": 12, "quantity": 1}]});
    let attempts: Vec<_> = (0..12)
        .map(|i| {
            let (client, token, body) = (client.clone(), token.clone(), body.clone());
            let url = format!("{}/api/order/orders", if i % 2 == 0 { &ga } else { &gb });
            tokio::spawn(async move {
                client.send("POST", &url, Some(&token), &[("Idempotency-Key", "twelve")], Some(body)).await
            })
        })
        .collect();
    let (mut created, mut orders) = (0, BTreeSet::new());
    for a in attempts {
        let (s, o) = a.await.unwrap();
        assert!(s == 201 || s == 200, "{s} {o}");
        created += usize::from(s == 201);
        orders.insert(o["id"].as_i64().unwrap());
    }
    assert_eq!((created, orders.len()), (1, 1), "one order, created once");
    assert_eq!(client.stock(&gb, 11).await, before - 2, "stock taken once");
    let (_, listed) = client.send("GET", &format!("{gb}/api/order/orders"), Some(&token), &[], None).await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_journeys_across_both_processes_pass_every_check() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(&pg, dir.path()).await;
    let summary = dir.path().join("summary.json");
    let script = prescale_testkit::repo_root().join("loadtest/journeys.js");
    let bases = format!("BASE_URLS={},{}", a.gateway(), b.gateway());
    let run = tokio::task::spawn_blocking(move || {
        Command::new(k6())
            .args(["run", "--quiet", "--no-color", "--summary-export"])
            .arg(&summary)
            .args(["-e", &bases, "-e", "VUS=4", "-e", "DURATION=8s", "-e", "USERS=4"])
            .arg(script)
            .output()
            .map(|out| (out, summary))
    })
    .await
    .unwrap()
    .unwrap();
    let (out, summary) = run;
    assert!(
        out.status.success(),
        "k6 failed:\n{}\n{}\nA:\n{}\nB:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        a.log(),
        b.log()
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["metrics"]["checks"]["fails"], 0, "{}", s["metrics"]["checks"]);
    assert!(s["metrics"]["checks"]["passes"].as_f64().unwrap() > 20.0, "{}", s["metrics"]["checks"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once_and_errors_hide_the_password() {
    use storefront::Service;
    use storefront::common::db::{Database, Db, PoolSettings};
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let database = Database::Url(pg.url());
    // Eight replicas of each service with data, all at once.
    let opens: Vec<_> = (0..8)
        .flat_map(|_| [Service::Authen, Service::Booking, Service::Order, Service::Product, Service::Profile])
        .map(|s| {
            let database = database.clone();
            tokio::spawn(async move { Db::open(s, &database, PoolSettings::default()).await.map(|db| (s, db)) })
        })
        .collect();
    let mut dbs = Vec::new();
    for o in opens {
        dbs.push(o.await.unwrap().unwrap_or_else(|e| panic!("{e}")));
    }
    let (_, product) = dbs.iter().find(|(s, _)| *s == Service::Product).unwrap();
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&product.pool).await.unwrap();
    assert_eq!(applied, 1, "one migration, applied once");
    assert_eq!(dbs.len(), 40, "every replica started");

    // A wrong password: the error names the database, never the password given.
    let wrong = pg.url().replace(prescale_testkit::postgres::PASSWORD, "not-the-password");
    let settings = storefront::Settings {
        database: Database::Url(wrong),
        ..storefront::Settings::dev(pg.dir(), &Default::default(), 4).unwrap()
    };
    let e = storefront::app(Service::Authen, &settings).await.unwrap_err().to_string();
    assert!(e.contains("authen") && e.contains("127.0.0.1") && !e.contains("not-the-password"), "{e}");
}
