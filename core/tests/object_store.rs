//! The object-store contract, run against the local folder store and against a real S3
//! protocol server (s3s-fs) on loopback.

use std::sync::Arc;

use bytes::Bytes;
use prescale_core::store::{LocalStore, ObjectStore, S3Store, StoreError};
use prescale_testkit::s3::S3Server;

/// Behaviour every store must share.
async fn contract(store: &dyn ObjectStore) {
    // Missing key.
    match store.get("metrics/none.parquet").await {
        Err(StoreError::NotFound { key, .. }) => assert_eq!(key, "metrics/none.parquet"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Put, get.
    store.put("metrics/date=2024-01-01/a.parquet", Bytes::from_static(b"one")).await.unwrap();
    store.put("metrics/date=2024-01-02/b.parquet", Bytes::from_static(b"two!")).await.unwrap();
    store.put("models/latest", Bytes::from_static(b"v1")).await.unwrap();
    assert_eq!(store.get("metrics/date=2024-01-01/a.parquet").await.unwrap(), "one");
    // Overwrite.
    store.put("models/latest", Bytes::from_static(b"v2")).await.unwrap();
    assert_eq!(store.get("models/latest").await.unwrap(), "v2");
    // List by prefix: keys relative to the store, sorted, sizes right.
    let listed = store.list("metrics/").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|m| (m.key.as_str(), m.size)).collect();
    assert_eq!(keys, vec![("metrics/date=2024-01-01/a.parquet", 3), ("metrics/date=2024-01-02/b.parquet", 4)]);
    let partial: Vec<_> = store.list("metrics/date=2024-01-0").await.unwrap();
    assert_eq!(partial.len(), 2);
    assert_eq!(store.list("").await.unwrap().len(), 3);
    assert!(store.list("nothing/").await.unwrap().is_empty());
    // Delete, and deleting again is fine.
    store.delete("models/latest").await.unwrap();
    store.delete("models/latest").await.unwrap();
    assert!(matches!(store.get("models/latest").await, Err(StoreError::NotFound { .. })));
    // Bad keys are refused before anything is sent.
    let err = store.put("../escape", Bytes::new()).await.unwrap_err().to_string();
    assert!(err.contains("\"../escape\""), "{err}");
}

#[tokio::test]
async fn local_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&LocalStore::new(dir.path().join("root"))).await;
}

#[tokio::test]
async fn s3_store_contract_with_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path()).await.unwrap();
    server.create_bucket("prescale").unwrap();
    contract(&S3Store::new(server.client(), "prescale", "env/dev")).await;
    // The prefix really is where objects live.
    let root = S3Store::new(server.client(), "prescale", "");
    let keys: Vec<_> = root.list("").await.unwrap().into_iter().map(|m| m.key).collect();
    assert!(keys.iter().all(|k| k.starts_with("env/dev/")), "{keys:?}");
}

#[tokio::test]
async fn s3_missing_bucket_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path()).await.unwrap();
    let store = S3Store::new(server.client(), "no-such-bucket", "");
    let err = store.put("a", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, StoreError::BucketNotFound { ref bucket } if bucket == "no-such-bucket"), "{err:?}");
    assert!(err.to_string().contains("no-such-bucket"));
    let err = store.list("").await.unwrap_err();
    assert!(matches!(err, StoreError::BucketNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn s3_wrong_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path()).await.unwrap();
    server.create_bucket("prescale").unwrap();
    let wrong_secret = S3Store::new(server.client_with(prescale_testkit::s3::ACCESS_KEY, "wrong"), "prescale", "");
    let err = wrong_secret.put("a", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("credentials"), "{err}");
    let unknown_key = S3Store::new(server.client_with("nobody", "nothing"), "prescale", "");
    let err = unknown_key.get("a").await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    // Nothing was written by the refused put.
    assert!(S3Store::new(server.client(), "prescale", "").list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn s3_outage_is_transient_and_data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = S3Server::start(dir.path()).await.unwrap();
    server.create_bucket("prescale").unwrap();
    let store = S3Store::new(server.client(), "prescale", "p");
    store.put("kept", Bytes::from_static(b"before")).await.unwrap();
    server.stop().await;
    let err = store.put("later", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    server.restart().await.unwrap();
    store.put("later", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(store.get("kept").await.unwrap(), "before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_put_is_atomic_for_concurrent_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()));
    let size = 4 << 20;
    store.put("big", Bytes::from(vec![b'a'; size])).await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let byte = if i % 2 == 0 { b'b' } else { b'a' };
                store.put("big", Bytes::from(vec![byte; size])).await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let data = store.get("big").await.unwrap();
        assert_eq!(data.len(), size, "a reader saw a partial object");
        assert!(data.iter().all(|&b| b == data[0]), "a reader saw a mix of two writes");
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads > 0);
    // No temporary files are left behind or listed.
    assert_eq!(store.list("").await.unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
