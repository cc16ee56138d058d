//! The Kubernetes files of `deploy/`: both overlays build, every object parses strictly
//! into its `k8s-openapi` type, workloads are wired together (selectors, Services,
//! ConfigMaps, Secrets), every container is bounded, probed and non-root, and the
//! components' settings in the ConfigMaps load with the components' own config types.

use std::collections::BTreeSet;

use prescale_checks::kustomize::{build, pod_spec};
use prescale_checks::repo;
use prescale_checks::typed::{check, describe};
use serde_json::Value;

/// Secrets operators create themselves (documented in the overlays and the README).
const OPERATOR_SECRETS: [&str; 4] = ["predictor-tls", "storefront-jwt", "storefront-db", "keda-predictor-client"];

#[test]
fn the_overlays_build_with_the_real_kustomize_and_the_fallback_alike() {
    eprintln!("building with {}", prescale_checks::kustomize::builder());
    let Some(kubectl) = prescale_checks::kustomize::kubectl() else {
        eprintln!("no kubectl: the fallback alone is checked");
        return;
    };
    let key =
        |o: &Value| (o["kind"].to_string(), o["metadata"]["namespace"].to_string(), o["metadata"]["name"].to_string());
    for dir in ["deploy/overlays/dev", "deploy/overlays/prod", "deploy/overlays/operator", "keda"] {
        let real = prescale_checks::kustomize::build_with_kubectl(&kubectl, &repo().join(dir)).unwrap();
        let fallback = prescale_checks::kustomize::build_subset(&repo().join(dir)).unwrap();
        let real: BTreeSet<_> = real.iter().map(key).collect();
        let fallback: BTreeSet<_> = fallback.iter().map(key).collect();
        assert_eq!(real, fallback, "{dir}: the fallback builds other objects than kubectl kustomize");
    }
}

/// Disruptions a PodDisruptionBudget allows at `replicas` healthy pods (percentages
/// rounded up, as the disruption controller does).
fn disruptions_allowed(pdb: &Value, replicas: i64) -> i64 {
    let scaled = |v: &Value| -> i64 {
        match v {
            Value::Number(n) => n.as_i64().unwrap(),
            Value::String(p) => {
                let percent: i64 = p.trim_end_matches('%').parse().unwrap();
                (percent * replicas + 99) / 100
            }
            other => panic!("{other}"),
        }
    };
    let spec = &pdb["spec"];
    if !spec["maxUnavailable"].is_null() {
        scaled(&spec["maxUnavailable"])
    } else {
        replicas - scaled(&spec["minAvailable"])
    }
}

#[test]
fn no_disruption_budget_blocks_a_drain_at_any_replica_count() {
    let keda = build(&repo().join("keda")).unwrap();
    for name in ["dev", "prod", "operator"] {
        let objects = overlay(name);
        let mut checked = 0;
        for pdb in objects.iter().filter(|o| o["kind"] == "PodDisruptionBudget") {
            let ns = pdb["metadata"]["namespace"].as_str().unwrap();
            let selector = &pdb["spec"]["selector"]["matchLabels"];
            let workload = objects
                .iter()
                .find(|o| {
                    o["metadata"]["namespace"] == ns
                        && matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet"))
                        && labels_match(selector, &o["spec"]["template"]["metadata"]["labels"])
                })
                .unwrap_or_else(|| panic!("{name}: {} selects no workload", describe(pdb)));
            let wname = workload["metadata"]["name"].as_str().unwrap();
            // The counts it can have: a ScaledObject's range, else its replicas (1 unset).
            let scaled = keda.iter().find(|o| {
                o["kind"] == "ScaledObject"
                    && o["metadata"]["namespace"] == ns
                    && o["spec"]["scaleTargetRef"]["name"] == wname
            });
            let counts = match scaled {
                Some(so) => {
                    so["spec"]["minReplicaCount"].as_i64().unwrap_or(1)
                        ..=so["spec"]["maxReplicaCount"].as_i64().unwrap()
                }
                None => {
                    let n = workload["spec"]["replicas"].as_i64().unwrap_or(1);
                    n..=n
                }
            };
            for n in counts {
                assert!(
                    disruptions_allowed(pdb, n) >= 1,
                    "{name}: {} allows no disruption at {n} replicas of {wname}: a node drain hangs",
                    describe(pdb)
                );
            }
            checked += 1;
        }
        assert!(checked >= 8, "{name}: {checked} budgets");
    }
}

#[test]
fn the_scaler_runs_with_its_rbac_and_reaches_the_predictors_service() {
    let keda = build(&repo().join("keda")).unwrap();
    for name in ["dev", "prod", "operator"] {
        let objects = overlay(name);
        let deployment = find(&objects, "Deployment", "prescale-scaler");
        let spec = pod_spec(deployment).unwrap();
        let sa = spec["serviceAccountName"].as_str().unwrap();
        let sa_ns = deployment["metadata"]["namespace"].as_str().unwrap();
        let config: prescale_scaler::run::RunConfig = prescale_core::config::from_toml_str(
            find(&objects, "ConfigMap", "scaler-config")["data"]["scaler.toml"].as_str().unwrap(),
        )
        .unwrap();
        config.validate().unwrap();
        assert!(config.shadow, "{name}: the scaler ships in shadow mode");
        // Its RBAC is exactly what `prescale-scaler rbac` prints for its targets, bound to
        // the ServiceAccount the Deployment runs as.
        let wanted = prescale_scaler::rbac::for_targets(&config.targets, sa_ns);
        for item in wanted["items"].as_array().unwrap() {
            let kind = item["kind"].as_str().unwrap();
            let ns = item["metadata"]["namespace"].as_str().unwrap();
            let shipped = objects
                .iter()
                .find(|o| {
                    o["kind"] == kind
                        && o["metadata"]["namespace"] == ns
                        && o["metadata"]["name"] == item["metadata"]["name"]
                })
                .unwrap_or_else(|| panic!("{name}: no {kind} in {ns} for the scaler"));
            let field = if kind == "Role" { "rules" } else { "subjects" };
            assert_eq!(shipped[field], item[field], "{name}: {kind} in {ns}");
            if kind == "RoleBinding" {
                assert_eq!(shipped["subjects"][0]["name"], sa);
                assert_eq!(shipped["roleRef"], item["roleRef"]);
            }
        }
        assert_eq!(find(&objects, "ServiceAccount", sa)["metadata"]["namespace"], sa_ns);
        // The predictor URL names the predictor's Service, on the port that reaches its
        // HTTP API.
        let url = reqwest::Url::parse(&config.predictor_url).unwrap();
        let host = url.host_str().unwrap();
        let mut parts = host.split('.');
        let (svc, ns) = (parts.next().unwrap(), parts.next().unwrap_or(sa_ns));
        let service = objects
            .iter()
            .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == svc && o["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("{name}: the scaler's {host} is no Service"));
        let port = url.port_or_known_default().unwrap();
        let sp = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == port)
            .unwrap_or_else(|| panic!("{name}: Service {svc} has no port {port}"));
        let predictor = find(&objects, "Deployment", "predictor");
        let container = &pod_spec(predictor).unwrap()["containers"][0];
        let target = container["ports"].as_array().unwrap().iter().find(|p| p["name"] == sp["targetPort"]).unwrap();
        assert!(labels_match(&service["spec"]["selector"], &predictor["spec"]["template"]["metadata"]["labels"]));
        let predictor_config: prescale_predictor::config::PredictorConfig = prescale_core::config::from_toml_str(
            find(&objects, "ConfigMap", "predictor-config")["data"]["predictor.toml"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(
            target["containerPort"].as_u64(),
            Some(u64::from(predictor_config.listen.port())),
            "{name}: the Service port {port} is not the predictor's HTTP listener"
        );
        // Its targets are the ScaledObjects' workloads with the same bounds.
        for t in &config.targets {
            let so = keda
                .iter()
                .find(|o| {
                    o["kind"] == "ScaledObject"
                        && o["metadata"]["namespace"] == t.namespace.as_str()
                        && o["spec"]["scaleTargetRef"]["name"] == t.name.as_str()
                })
                .unwrap_or_else(|| panic!("{name}: the scaler's target {} has no ScaledObject", t.describe()));
            assert_eq!(so["spec"]["minReplicaCount"].as_u64(), Some(u64::from(t.min_replicas)), "{}", t.describe());
            assert_eq!(so["spec"]["maxReplicaCount"].as_u64(), Some(u64::from(t.max_replicas)), "{}", t.describe());
        }
    }
}

fn overlay(name: &str) -> Vec<Value> {
    build(&repo().join("deploy/overlays").join(name)).unwrap_or_else(|e| panic!("overlay {name}: {e}"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[test]
fn every_object_of_every_overlay_is_a_valid_kubernetes_object() {
    for name in ["dev", "prod", "operator"] {
        let objects = overlay(name);
        assert!(objects.len() > 30, "{name}: {} objects", objects.len());
        let mut seen = BTreeSet::new();
        for o in &objects {
            check(o).unwrap_or_else(|e| panic!("overlay {name}: {e}"));
            let key =
                (o["kind"].to_string(), o["metadata"]["namespace"].to_string(), o["metadata"]["name"].to_string());
            assert!(seen.insert(key), "overlay {name}: {} twice", describe(o));
            // Cluster-scoped: namespaces, and the inventory's read-only ClusterRole.
            if !matches!(o["kind"].as_str(), Some("Namespace" | "ClusterRole" | "ClusterRoleBinding")) {
                let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
                assert!(ns == "prescale" || ns == "storefront", "overlay {name}: {} has namespace {ns:?}", describe(o));
            }
        }
    }
}

#[test]
fn workloads_are_wired_bounded_probed_and_unprivileged() {
    for name in ["dev", "prod"] {
        let objects = overlay(name);
        let named = |kind: &str, ns: &str| -> BTreeSet<String> {
            objects
                .iter()
                .filter(|o| o["kind"] == kind && o["metadata"]["namespace"] == ns)
                .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        };
        let mut templates: Vec<(String, &Value)> = Vec::new();
        for o in &objects {
            let Some(spec) = pod_spec(o) else { continue };
            let what = format!("overlay {name}: {}", describe(o));
            let ns = o["metadata"]["namespace"].as_str().unwrap();
            let template_labels = if o["kind"] == "CronJob" {
                &o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
            } else if o["kind"] == "Job" {
                &o["spec"]["template"]["metadata"]["labels"]
            } else {
                assert!(
                    labels_match(&o["spec"]["selector"]["matchLabels"], &o["spec"]["template"]["metadata"]["labels"]),
                    "{what}: the selector does not match the pod template"
                );
                &o["spec"]["template"]["metadata"]["labels"]
            };
            templates.push((ns.to_owned(), template_labels));
            assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{what}: runAsNonRoot");
            if let Some(sa) = spec["serviceAccountName"].as_str() {
                assert!(named("ServiceAccount", ns).contains(sa), "{what}: no ServiceAccount {sa}");
            }
            for c in spec["containers"].as_array().unwrap() {
                let what = format!("{what} container {}", c["name"]);
                for kind in ["requests", "limits"] {
                    for r in ["cpu", "memory"] {
                        assert!(c["resources"][kind][r].is_string(), "{what}: no resources.{kind}.{r}");
                    }
                }
                if o["kind"] != "CronJob" && o["kind"] != "Job" {
                    assert!(c["readinessProbe"].is_object() && c["livenessProbe"].is_object(), "{what}: probes");
                }
                assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{what}");
                let image = c["image"].as_str().unwrap();
                assert!(!image.ends_with(":latest") && image.contains(':'), "{what}: image {image} is not pinned");
                // Every ConfigMap and Secret it reads exists or is the operator's to create.
                let mut refs: Vec<(&str, &Value)> = Vec::new();
                for e in c["env"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    refs.push(("Secret", &e["valueFrom"]["secretKeyRef"]));
                    refs.push(("ConfigMap", &e["valueFrom"]["configMapKeyRef"]));
                }
                for e in c["envFrom"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    refs.push(("Secret", &e["secretRef"]));
                    refs.push(("ConfigMap", &e["configMapRef"]));
                }
                for (kind, r) in refs {
                    let (Some(n), optional) = (r["name"].as_str(), r["optional"] == true) else { continue };
                    assert!(
                        optional || named(kind, ns).contains(n) || OPERATOR_SECRETS.contains(&n),
                        "{what}: {kind} {n} does not exist"
                    );
                }
                for m in c["volumeMounts"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let vol = m["name"].as_str().unwrap();
                    let declared = spec["volumes"].as_array().into_iter().flatten().any(|v| v["name"] == vol)
                        || o["spec"]["volumeClaimTemplates"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|v| v["metadata"]["name"] == vol);
                    assert!(declared, "{what}: mounts an undeclared volume {vol}");
                }
            }
            for v in spec["volumes"].as_array().map(Vec::as_slice).unwrap_or_default() {
                if let Some(cm) = v["configMap"]["name"].as_str() {
                    assert!(named("ConfigMap", ns).contains(cm), "{what}: ConfigMap {cm} does not exist");
                }
                if let Some(s) = v["secret"]["secretName"].as_str() {
                    assert!(named("Secret", ns).contains(s) || OPERATOR_SECRETS.contains(&s), "{what}: Secret {s}");
                }
                if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
                    assert!(named("PersistentVolumeClaim", ns).contains(c), "{what}: PVC {c}");
                }
            }
        }
        // Every Service and PodDisruptionBudget selects some pods.
        for o in objects.iter().filter(|o| o["kind"] == "Service" || o["kind"] == "PodDisruptionBudget") {
            let selector =
                if o["kind"] == "Service" { &o["spec"]["selector"] } else { &o["spec"]["selector"]["matchLabels"] };
            let ns = o["metadata"]["namespace"].as_str().unwrap();
            assert!(
                templates.iter().any(|(n, labels)| n == ns && labels_match(selector, labels)),
                "overlay {name}: {} selects no pods",
                describe(o)
            );
        }
        // The storefront's Deployments leave replicas to KEDA.
        for o in objects.iter().filter(|o| o["kind"] == "Deployment" && o["metadata"]["namespace"] == "storefront") {
            assert!(o["spec"]["replicas"].is_null(), "overlay {name}: {} sets replicas; KEDA owns them", describe(o));
        }
    }
    // The overlays differ where they should.
    let (dev, prod) = (overlay("dev"), overlay("prod"));
    assert_eq!(find(&dev, "Deployment", "predictor")["spec"]["replicas"], 1);
    assert_eq!(find(&prod, "Deployment", "predictor")["spec"]["replicas"], 3);
    // Shadow mode is the ConfigMap every replica mounts as a folder (so updates reach it).
    assert_eq!(find(&dev, "ConfigMap", "predictor-shadow")["data"]["shadow"], "true", "dev runs in shadow mode");
    assert_eq!(find(&prod, "ConfigMap", "predictor-shadow")["data"]["shadow"], "false");
    for objects in [&dev, &prod] {
        let spec = pod_spec(find(objects, "Deployment", "predictor")).unwrap();
        let mount = spec["containers"][0]["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "shadow");
        let mount = mount.expect("the shadow ConfigMap is mounted");
        assert!(mount["subPath"].is_null(), "a subPath mount is never refreshed");
        let predictor: prescale_predictor::config::PredictorConfig = prescale_core::config::from_toml_str(
            find(objects, "ConfigMap", "predictor-config")["data"]["predictor.toml"].as_str().unwrap(),
        )
        .unwrap();
        let file = predictor.shadow_file.expect("shadow_file is set");
        assert_eq!(file, std::path::Path::new(mount["mountPath"].as_str().unwrap()).join("shadow"));
    }
    assert!(prod.iter().all(|o| o["kind"] != "Secret"), "prod ships no secret values");
    // The storefront keeps no data in its pods; the services with data share one database.
    for objects in [&dev, &prod] {
        for o in objects.iter().filter(|o| o["kind"] == "Deployment" && o["metadata"]["namespace"] == "storefront") {
            let spec = pod_spec(o).unwrap();
            assert!(spec["volumes"].is_null(), "{}: per-pod volumes", describe(o));
            let c = &spec["containers"][0];
            let args = c["args"].to_string();
            assert!(!args.contains("--data-dir"), "{}: {args}", describe(o));
            let service = o["metadata"]["name"].as_str().unwrap();
            let reads_db = c["env"].as_array().into_iter().flatten().any(|e| {
                e["name"] == "STOREFRONT_DATABASE_URL" && e["valueFrom"]["secretKeyRef"]["name"] == "storefront-db"
            });
            assert_eq!(reads_db, !["gateway", "recommender"].contains(&service), "{}: database URL", describe(o));
        }
    }
    let pg = find(&dev, "StatefulSet", "postgres");
    assert_eq!(
        pg["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data",
        "PostgreSQL keeps its data on a volume"
    );
    let pg_env = pg["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(pg_env.contains("storefront-postgres"), "its password comes from a Secret: {pg_env}");
    // This build keeps generated names as written (kubectl's kustomize adds a hash suffix
    // and rewrites the references).
    let db_url = find(&dev, "Secret", "storefront-db");
    assert!(db_url["stringData"]["url"].as_str().is_some_and(|u| u.starts_with("postgres://")), "{db_url}");
    assert!(prod.iter().all(|o| o["metadata"]["name"] != "postgres"), "prod uses a managed PostgreSQL");
}

#[test]
fn the_dev_credentials_are_random_generated_once_and_agree() {
    // The script: random values, files only the owner reads, never rewritten.
    let script = repo().join("scripts/dev-secrets.sh");
    let run = |dir: &std::path::Path| {
        let out = std::process::Command::new(&script).arg(dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(a.path());
    run(b.path());
    let read = |dir: &std::path::Path, f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    for f in ["minio.env", "s3.env", "postgres.env", "database.env", "jwt.env"] {
        assert_ne!(read(a.path(), f), read(b.path(), f), "{f}: two clones got the same values");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.path().join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let before = read(a.path(), "postgres.env");
    run(a.path());
    assert_eq!(read(a.path(), "postgres.env"), before, "a second run rewrote the password");

    // The overlay: the pairs that must agree do, and nothing is a fixed literal.
    let dev = overlay("dev");
    let secret = |name: &str, key: &str| -> String {
        find(&dev, "Secret", name)["stringData"][key].as_str().unwrap_or_else(|| panic!("{name}.{key}")).to_owned()
    };
    assert_eq!(secret("minio-credentials", "MINIO_ROOT_USER"), secret("prescale-s3", "AWS_ACCESS_KEY_ID"));
    let minio = secret("minio-credentials", "MINIO_ROOT_PASSWORD");
    assert_eq!(minio, secret("prescale-s3", "AWS_SECRET_ACCESS_KEY"));
    let pg = secret("storefront-postgres", "password");
    assert!(secret("storefront-db", "url").contains(&format!(":{pg}@postgres.storefront.svc:5432/")));
    let jwt = secret("storefront-jwt", "secret");
    assert!(jwt.len() >= 32, "the services refuse a JWT secret under 32 bytes");
    for value in [minio, pg, jwt] {
        assert!(value.len() >= 32 && value.chars().all(|c| c.is_ascii_hexdigit()), "{value}");
    }
    let text = serde_json::to_string(&dev).unwrap();
    assert!(!text.contains("dev-only"), "a fixed development literal is left");
}

#[test]
fn the_settings_in_the_config_maps_load_with_the_components_types() {
    for name in ["dev", "prod"] {
        let objects = overlay(name);
        let data = |cm: &str, key: &str| -> String {
            find(&objects, "ConfigMap", cm)["data"][key]
                .as_str()
                .unwrap_or_else(|| panic!("{cm} has no {key}"))
                .to_owned()
        };
        let collector: prescale_collector::config::CollectorConfig =
            prescale_core::config::from_toml_str(&data("collector-config", "collector.toml")).unwrap();
        collector.clone().build(&Default::default()).unwrap();
        let mut predictor: prescale_predictor::config::PredictorConfig =
            prescale_core::config::from_toml_str(&data("predictor-config", "predictor.toml")).unwrap();
        // The certificate files are mounted from a Secret in the cluster; the paths must be
        // where the Deployment mounts them.
        let tls = predictor.tls.take().expect("gRPC with mutual TLS");
        assert!(tls.cert.starts_with("/etc/prescale/tls") && tls.client_ca.is_some(), "{tls:?}");
        predictor.clone().build(&Default::default()).unwrap();
        let _: prescale_models::train::TrainConfig =
            prescale_core::config::from_toml_str(&data("trainer-config", "train.toml")).unwrap();
        // The collector's spool is on its volume, and its id is the StatefulSet's pod.
        assert!(collector.spool_dir.starts_with("/var/lib/prescale"));
        assert_eq!(collector.id, "collector-0");
        // The trainer's driver fits the fleet model and runs the shards as an Indexed Job
        // from the template's ConfigMap, publishing through the gate (never forced).
        let cron = find(&objects, "CronJob", "trainer");
        let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        let trainer = &pod["containers"][0];
        let args: Vec<&str> = trainer["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args[0], "fleet", "{args:?}");
        assert!(!args.contains(&"--force"), "{args:?}");
        let env = |name: &str| -> String {
            trainer["env"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap()["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        // The trainer's selector names every service the predictor serves.
        let selector = env("SERVICES");
        assert!(args.windows(2).any(|w| w == ["--services", "$(SERVICES)"]), "{args:?}");
        // It reads a bounded history, in a form the trainer takes.
        assert!(args.windows(2).any(|w| w == ["--from", "$(HISTORY)"]), "{args:?}");
        prescale_trainer::input::time_bound(&env("HISTORY")).unwrap();
        // It publishes where the predictor reads the fleet model, from the data the
        // collector writes.
        assert_eq!(env("PRESCALE_MODELS"), predictor.fleet_model.as_ref().unwrap().to_string());
        let template = find(&objects, "ConfigMap", "trainer-evaluate-job")["data"]["job.yaml"].as_str().unwrap();
        let job = prescale_trainer::indexed_job::template(template).unwrap();
        let shards = prescale_trainer::indexed_job::shards_job(&job, "v1", 4, 4);
        let shard_pod = serde_json::to_value(shards.spec.unwrap().template.spec.unwrap()).unwrap();
        let shard_env = shard_pod["containers"][0]["env"].to_string();
        assert!(
            shard_env.contains(&env("PRESCALE_MODELS")) && shard_env.contains(&env("PRESCALE_DATA")),
            "{shard_env}"
        );
        assert_eq!(env("PRESCALE_JOB_TEMPLATE"), "/etc/prescale/job/job.yaml");
        // Only the driver reaches the API server, and only for Jobs in its namespace.
        assert_eq!(pod["automountServiceAccountToken"], true);
        assert_eq!(shard_pod["serviceAccountName"], "trainer-evaluate");
        let role = find(&objects, "Role", "trainer-jobs");
        assert_eq!(
            role["rules"],
            serde_json::json!([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]}])
        );
        let keda = build(&repo().join("keda")).unwrap();
        let host =
            predictor.scaled_objects.as_ref().expect("the predictor follows the ScaledObjects").predictor.clone();
        let at = prescale_core::inventory::scaled_object::PredictorAt { host };
        let mut scaled = 0;
        for o in keda.iter().filter(|o| o["kind"] == "ScaledObject") {
            let (id, _) = prescale_core::inventory::scaled_object::read(o, &at).unwrap().unwrap();
            assert!(id.matches(&selector), "the trainer's {selector:?} leaves out {id}, which a ScaledObject declares");
            scaled += 1;
        }
        assert!(scaled >= 4, "every ScaledObject is read");
        // The collector follows the same ScaledObjects: nothing to list twice.
        let so = collector.services.scaled_objects.as_ref().expect("the collector follows the ScaledObjects");
        assert_eq!(so.predictor, at.host);
        assert!(collector.services.list.is_empty(), "the services are declared once");
    }
}
