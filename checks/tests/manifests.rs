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
fn every_object_of_both_overlays_is_a_valid_kubernetes_object() {
    for name in ["dev", "prod"] {
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
                if o["kind"] != "CronJob" {
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
    let dev_env = &find(&dev, "Deployment", "predictor")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(dev_env.as_array().unwrap().iter().any(|e| e["name"] == "PRESCALE__SHADOW"), "dev runs in shadow mode");
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
