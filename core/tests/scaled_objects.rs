//! The inventory from ScaledObjects through a mocked Kubernetes API server: an HTTP server
//! on loopback that answers the reflector's list and watch of `scaledobjects.keda.sh` as
//! the API server does (a list with a resourceVersion, then a stream of watch events).
//! ScaledObjects are added, changed and deleted while the reflector runs; bad metadata is
//! refused naming the key; the bound refuses the rest.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use prescale_core::ServiceId;
use prescale_core::inventory::Inventory;
use prescale_core::inventory::scaled_object::PredictorAt;
use prescale_core::inventory::watch::{ScaledObjects, Snapshot};
use serde_json::{Value, json};
use tokio::sync::broadcast;

#[derive(Clone)]
struct Api {
    objects: Arc<Mutex<Vec<Value>>>,
    /// Every event with its resourceVersion, so a watch from a version replays what
    /// followed it, as the API server does.
    log: Arc<Mutex<Vec<(u64, Value)>>>,
    events: broadcast::Sender<(u64, Value)>,
    version: Arc<Mutex<u64>>,
}

impl Api {
    /// Applies a change as the API server would, and tells the watchers.
    fn change(&self, kind: &str, mut object: Value) {
        let mut version = self.version.lock().unwrap();
        *version += 1;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let mut objects = self.objects.lock().unwrap();
        let name = object["metadata"]["name"].clone();
        objects.retain(|o| o["metadata"]["name"] != name);
        if kind != "DELETED" {
            objects.push(object.clone());
        }
        let event = json!({"type": kind, "object": object});
        self.log.lock().unwrap().push((*version, event.clone()));
        let _ = self.events.send((*version, event));
    }
}

async fn scaled_objects(
    State(api): State<Api>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let rx = api.events.subscribe();
        let past: Vec<(u64, Value)> = api.log.lock().unwrap().iter().filter(|(v, _)| *v > from).cloned().collect();
        let seen = past.last().map_or(from, |(v, _)| *v);
        let replay = futures::stream::iter(past.into_iter().map(|(_, e)| Ok::<_, std::io::Error>(format!("{e}\n"))));
        let live = futures::stream::unfold(rx, move |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok((v, _)) if v <= seen => continue,
                    Ok((_, event)) => return Some((Ok::<_, std::io::Error>(format!("{event}\n")), rx)),
                    Err(_) => return None,
                }
            }
        });
        let stream = futures::StreamExt::chain(replay, live);
        return ([("content-type", "application/json")], axum::body::Body::from_stream(stream)).into_response();
    }
    let items = api.objects.lock().unwrap().clone();
    let version = api.version.lock().unwrap().to_string();
    axum::Json(json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObjectList",
        "metadata": {"resourceVersion": version},
        "items": items
    }))
    .into_response()
}

fn scaled_object(name: &str, scaler: &str, extra: Value) -> Value {
    let mut meta = json!({"scalerAddress": format!("{scaler}:9500"), "enableTLS": "true", "unsafeSsl": "false"});
    for (k, v) in extra.as_object().unwrap() {
        meta[k] = v.clone();
    }
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
        "spec": {
            "scaleTargetRef": {"name": name},
            "minReplicaCount": 2,
            "maxReplicaCount": 20,
            "triggers": [{"type": "external", "metadata": meta}]
        }
    })
}

const PREDICTOR: &str = "predictor.prescale.svc.cluster.local";

async fn until(objects: &ScaledObjects, what: &str, ok: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let snap = objects.snapshot();
        if ok(&snap) {
            return snap;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {snap:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(snap: &Snapshot) -> Vec<String> {
    snap.services.iter().map(|(id, _)| id.to_string()).collect()
}

#[tokio::test]
async fn scaled_objects_added_changed_and_deleted_follow_without_restarts() {
    let api = Api {
        objects: Arc::default(),
        log: Arc::default(),
        events: broadcast::channel(64).0,
        version: Arc::new(Mutex::new(1)),
    };
    api.change("ADDED", scaled_object("order", PREDICTOR, json!({"capacity": "10"})));
    api.change("ADDED", scaled_object("legacy", "other-scaler.svc", json!({})));
    let app = axum::Router::new()
        .route("/apis/keda.sh/v1alpha1/scaledobjects", axum::routing::get(scaled_objects))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    prescale_core::inventory::watch::install_tls_provider();
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let (objects, driver) = ScaledObjects::watch(client, None, PredictorAt { host: PREDICTOR.into() });
    tokio::spawn(driver);
    assert!(tokio::time::timeout(Duration::from_secs(20), objects.ready()).await.unwrap());

    // The first list: only the ScaledObject on the predictor, with its settings.
    let snap = until(&objects, "listed", |s| !s.services.is_empty()).await;
    assert_eq!(ids(&snap), vec!["shop/order"]);
    let order = &snap.services[0].1;
    assert_eq!((order.capacity, order.min_replicas, order.max_replicas), (Some(10.0), Some(2), Some(20)));

    // Added with a misspelt key: refused naming it; the others go on.
    api.change("ADDED", scaled_object("cart", PREDICTOR, json!({"capcity": "3"})));
    let snap = until(&objects, "cart refused", |s| !s.refused.is_empty()).await;
    assert_eq!(ids(&snap), vec!["shop/order"]);
    assert!(snap.refused[0].to_string().contains("shop/cart") && snap.refused[0].reason.contains("metadata.capcity"));

    // Fixed, and order's capacity changed: both seen.
    api.change("MODIFIED", scaled_object("cart", PREDICTOR, json!({"capacity": "3", "startup": "90s"})));
    api.change("MODIFIED", scaled_object("order", PREDICTOR, json!({"capacity": "25"})));
    let snap = until(&objects, "changed", |s| {
        s.services.len() == 2 && s.services.iter().any(|(id, o)| id.name() == "order" && o.capacity == Some(25.0))
    })
    .await;
    assert_eq!(ids(&snap), vec!["shop/cart", "shop/order"]);
    assert!(snap.refused.is_empty());
    assert_eq!(snap.services[0].1.startup, Some(Duration::from_secs(90)));

    // Bounded: past the bound a service is refused (and the component counts it).
    let merged = Inventory::merge(&[], &snap.services, &[], 1);
    assert_eq!(merged.ids(), vec!["shop/cart".parse::<ServiceId>().unwrap()]);
    assert_eq!(merged.refused, vec!["shop/order".parse::<ServiceId>().unwrap()]);

    // Deleted: gone.
    api.change("DELETED", scaled_object("order", PREDICTOR, json!({"capacity": "25"})));
    let snap = until(&objects, "deleted", |s| s.services.len() == 1).await;
    assert_eq!(ids(&snap), vec!["shop/cart"]);
}
