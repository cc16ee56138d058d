//! `prescale-trainer fleet` against a mocked Kubernetes API server (an HTTP server on
//! loopback answering the Job API as the API server does), reached through a kubeconfig
//! as in a cluster. The mock plays Kubernetes' part: when the Indexed Job is created it
//! runs each index's pod, the trainer binary with the container's arguments and
//! environment and `$(JOB_COMPLETION_INDEX)` substituted, and reports the Job's status.
//! The data is two services' traces written with `import` into a local store.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Mock {
    /// The Job as created.
    created: Arc<Mutex<Option<Value>>>,
    /// Its status as the mock's "pods" leave it.
    status: Arc<Mutex<Value>>,
    /// The index whose pod fails every time (its retry too).
    failing: Option<u32>,
}

fn trainer() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_prescale-trainer"))
}

/// Runs index `i`'s pod as the kubelet would: the first container's arguments with
/// `$(JOB_COMPLETION_INDEX)` replaced, its environment set.
fn run_pod(job: &Value, i: u32) -> bool {
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("$(JOB_COMPLETION_INDEX)", &i.to_string()))
        .collect();
    let mut cmd = trainer();
    cmd.args(&args);
    for e in container["env"].as_array().into_iter().flatten() {
        cmd.env(e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
    }
    let out = cmd.output().unwrap();
    if !out.status.success() {
        eprintln!("pod {i} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

async fn create(
    State(mock): State<Mock>,
    Path(ns): Path<String>,
    Json(mut job): Json<Value>,
) -> (StatusCode, Json<Value>) {
    assert_eq!(ns, "prescale", "the namespace of the kubeconfig's context");
    job["metadata"]["uid"] = json!("1234");
    job["metadata"]["resourceVersion"] = json!("1");
    *mock.created.lock().unwrap() = Some(job.clone());
    let completions = job["spec"]["completions"].as_u64().unwrap() as u32;
    *mock.status.lock().unwrap() = json!({"active": completions});
    let (pods, failing) = (job.clone(), mock.failing);
    let status = mock.status.clone();
    tokio::task::spawn_blocking(move || {
        let (mut succeeded, mut failed, mut failed_indexes) = (0, 0, Vec::new());
        for i in 0..completions {
            if Some(i) == failing {
                // Its pod fails, and so does the one retry `backoffLimitPerIndex: 1` allows.
                failed += 2;
                failed_indexes.push(i.to_string());
            } else if run_pod(&pods, i) {
                succeeded += 1;
            } else {
                failed += 1;
                failed_indexes.push(i.to_string());
            }
        }
        let condition = if failed_indexes.is_empty() {
            json!({"type": "Complete", "status": "True"})
        } else {
            json!({"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "Job has failed indexes"})
        };
        let mut s = json!({"succeeded": succeeded, "failed": failed, "conditions": [condition]});
        if !failed_indexes.is_empty() {
            s["failedIndexes"] = json!(failed_indexes.join(","));
        }
        *status.lock().unwrap() = s;
    });
    (StatusCode::CREATED, Json(job))
}

async fn get(State(mock): State<Mock>, Path((_, name)): Path<(String, String)>) -> (StatusCode, Json<Value>) {
    let Some(mut job) = mock.created.lock().unwrap().clone() else {
        return (StatusCode::NOT_FOUND, Json(json!({"kind": "Status", "code": 404, "message": "not found"})));
    };
    assert_eq!(job["metadata"]["name"], name.as_str());
    job["status"] = mock.status.lock().unwrap().clone();
    (StatusCode::OK, Json(job))
}

/// Starts the mock on loopback and writes a kubeconfig pointing at it.
async fn api_server(mock: Mock, dir: &std::path::Path) -> std::path::PathBuf {
    let app = axum::Router::new()
        .route("/apis/batch/v1/namespaces/{ns}/jobs", axum::routing::post(create))
        .route("/apis/batch/v1/namespaces/{ns}/jobs/{name}", axum::routing::get(get))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: mock, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
             users: [{{name: trainer, user: {{token: t}}}}]\n\
             contexts: [{{name: c, context: {{cluster: mock, user: trainer, namespace: prescale}}}}]\n\
             current-context: c\n"
        ),
    )
    .unwrap();
    path
}

/// Three days of one-minute counts: a daily wave, scaled, with a little noise.
fn trace(scale: f64) -> String {
    let start = chrono::DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z").unwrap();
    let mut out = String::from("timestamp,requests\n");
    for i in 0..3 * 1440i64 {
        let day = (i % 1440) as f64 / 1440.0;
        let noise = ((i * 7919) % 17) as f64 / 17.0 - 0.5;
        let rpm = 60.0 * scale * (100.0 + 80.0 * (std::f64::consts::TAU * day).sin() + 5.0 * noise);
        out.push_str(&format!("{},{rpm:.3}\n", (start + chrono::Duration::minutes(i)).to_rfc3339()));
    }
    out
}

/// The data (two services imported over the same days), the models folder, and a Job
/// template whose container runs the trainer with them.
fn setup(dir: &std::path::Path) -> (String, String, std::path::PathBuf) {
    let data = dir.join("data").display().to_string();
    let models = dir.join("models").display().to_string();
    let mut import = trainer();
    import.args(["import", "--data", &data]);
    for (name, scale) in [("order", 1.0), ("cart", 0.3)] {
        let path = dir.join(format!("{name}.csv"));
        std::fs::write(&path, trace(scale)).unwrap();
        import.arg("--trace").arg(format!("shop/{name}={}", path.display()));
    }
    let out = import.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let imported = String::from_utf8_lossy(&out.stdout);
    assert!(imported.contains("imported 4320 rows of shop/order") && imported.contains("of shop/cart"), "{imported}");
    let config = prescale_models::train::write_small_config(dir).unwrap();
    let template = dir.join("evaluate-job.yaml");
    std::fs::write(
        &template,
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: prescale-evaluate}}\nspec:\n  template:\n    spec:\n      \
             containers:\n        - name: trainer\n          image: prescale/trainer:latest\n          \
             args: [\"--train-config\", \"{}\"]\n          env:\n            - {{name: PRESCALE_DATA, value: \"{data}\"}}\n            \
             - {{name: PRESCALE_MODELS, value: \"{models}\"}}\n",
            config.display()
        ),
    )
    .unwrap();
    (data, models, template)
}

async fn fleet(
    dir: &std::path::Path,
    kubeconfig: &std::path::Path,
    template: &std::path::Path,
) -> std::process::Output {
    let (data, models) = (dir.join("data"), dir.join("models"));
    let config = dir.join("small-train.toml");
    let mut cmd = trainer();
    cmd.args(["--train-config", config.to_str().unwrap(), "--max-seconds", "5", "fleet", "--data"])
        .arg(&data)
        .args(["--services", "shop/*", "--models"])
        .arg(&models)
        .args(["--shards", "2", "--poll-seconds", "0.2", "--job-template"])
        .arg(template)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_driver_runs_the_shards_as_an_indexed_job_and_publishes_when_all_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (_, models, template) = setup(dir.path());
    let mock = Mock::default();
    let kubeconfig = api_server(mock.clone(), dir.path()).await;
    let out = fleet(dir.path(), &kubeconfig, &template).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let version = stdout.lines().find_map(|l| l.strip_prefix("published ")).unwrap().split(':').next().unwrap();

    // The Job as created: Indexed, one index per shard, each retried once, the index
    // passed to the shard's arguments.
    let job = mock.created.lock().unwrap().clone().unwrap();
    assert_eq!(job["metadata"]["name"], format!("prescale-evaluate-{}", version.to_ascii_lowercase()));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!((spec["completions"].as_u64(), spec["parallelism"].as_u64()), (Some(2), Some(2)));
    assert_eq!(spec["backoffLimitPerIndex"], 1);
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    let args = spec["template"]["spec"]["containers"][0]["args"].as_array().unwrap();
    assert_eq!(
        args[args.len() - 4..],
        [json!("--version"), json!(version), json!("--shard"), json!("$(JOB_COMPLETION_INDEX)/2")]
    );
    assert!(stderr.contains("2 of 2 shards done"), "{stderr}");

    // Published: both shards' services merged, `latest` moved.
    let latest: Value = serde_json::from_slice(&std::fs::read(format!("{models}/latest")).unwrap()).unwrap();
    assert_eq!(latest["version"], version);
    let services: Value =
        serde_json::from_slice(&std::fs::read(format!("{models}/{version}/services.json")).unwrap()).unwrap();
    assert_eq!(services.as_object().unwrap().keys().collect::<Vec<_>>(), ["shop/cart", "shop/order"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_failing_its_retry_too_is_named_and_nothing_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let (_, models, template) = setup(dir.path());
    let mock = Mock { failing: Some(1), ..Mock::default() };
    let kubeconfig = api_server(mock.clone(), dir.path()).await;
    let out = fleet(dir.path(), &kubeconfig, &template).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("shard 1/2 of 2 failed after one retry each"), "{stderr}");
    assert!(stderr.contains("--shard <i>/2"), "says how to rerun it: {stderr}");
    assert!(!std::path::Path::new(&format!("{models}/latest")).exists(), "nothing published");
}
