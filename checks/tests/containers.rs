//! The container build files of `deploy/docker`, checked statically (no Docker engine runs
//! here): every image the manifests run is built by a multi-stage file whose final stage
//! runs as a non-root user and starts a binary the workspace really builds, and libtorch
//! goes only into the images of the binaries that link it.

use std::collections::BTreeMap;

use prescale_checks::kustomize::{build, pod_spec};
use prescale_checks::repo;

/// One stage: `FROM <base> AS <name>` and its instructions.
#[derive(Debug, Default)]
struct Stage {
    base: String,
    name: String,
    lines: Vec<String>,
}

fn stages(file: &str) -> Vec<Stage> {
    let text = std::fs::read_to_string(repo().join("deploy/docker").join(file)).unwrap();
    // Continuation lines joined, comments dropped.
    let joined = text.replace("\\\n", " ");
    let mut out: Vec<Stage> = Vec::new();
    for line in joined.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("FROM ") {
            let mut words = rest.split_whitespace();
            let base = words.next().unwrap().to_owned();
            let name = match (words.next(), words.next()) {
                (Some(a), Some(n)) if a.eq_ignore_ascii_case("as") => n.to_owned(),
                _ => String::new(),
            };
            out.push(Stage { base, name, lines: Vec::new() });
        } else {
            out.last_mut().expect("an instruction before FROM").lines.push(line.to_owned());
        }
    }
    out
}

/// The final stage of `target` (or of the file), with the stages it builds on.
fn chain<'a>(all: &'a [Stage], target: Option<&str>) -> Vec<&'a Stage> {
    let mut stage = match target {
        Some(t) => all.iter().find(|s| s.name == t).unwrap_or_else(|| panic!("no stage {t}")),
        None => all.last().unwrap(),
    };
    let mut out = vec![stage];
    while let Some(parent) = all.iter().find(|s| !s.name.is_empty() && s.name == stage.base) {
        out.push(parent);
        stage = parent;
    }
    out
}

fn workspace_bins() -> Vec<String> {
    let mut bins = Vec::new();
    for dir in ["services", "collector", "predictor", "trainer", "scaler", "demo"] {
        let manifest = std::fs::read_to_string(repo().join(dir).join("Cargo.toml")).unwrap();
        for line in manifest.lines() {
            if let Some(name) = line.strip_prefix("name = \"").and_then(|r| r.strip_suffix('"'))
                && manifest.contains(&format!("[[bin]]\nname = \"{name}\""))
            {
                bins.push(name.to_owned());
            }
        }
    }
    bins
}

#[test]
fn every_image_is_built_multi_stage_non_root_with_libtorch_only_where_linked() {
    // image -> (file, target, binary, links libtorch)
    let images: BTreeMap<&str, (&str, Option<&str>, &str, bool)> = BTreeMap::from([
        ("prescale/storefront", ("storefront.Dockerfile", None, "storefront", false)),
        ("prescale/collector", ("collector.Dockerfile", None, "prescale-collector", false)),
        ("prescale/scaler", ("scaler.Dockerfile", None, "prescale-scaler", false)),
        ("prescale/predictor", ("torch.Dockerfile", Some("predictor"), "prescale-predictor", true)),
        ("prescale/trainer", ("torch.Dockerfile", Some("trainer"), "prescale-trainer", true)),
    ]);
    // Every image the deployment runs (besides Prometheus') is one of these.
    let objects = build(&repo().join("deploy/overlays/prod")).unwrap();
    for o in &objects {
        for c in pod_spec(o).and_then(|s| s["containers"].as_array()).into_iter().flatten() {
            let image = c["image"].as_str().unwrap().split(':').next().unwrap();
            assert!(image.starts_with("prom/") || images.contains_key(image), "no build file for {image}");
        }
    }
    let bins = workspace_bins();
    for (image, (file, target, binary, torch)) in images {
        let all = stages(file);
        assert!(all.len() >= 2, "{file}: not a multi-stage build");
        let chain = chain(&all, target);
        let last = chain[0];
        let user =
            last.lines.iter().rev().find_map(|l| l.strip_prefix("USER ")).unwrap_or_else(|| panic!("{image}: no USER"));
        let uid = user.split(':').next().unwrap();
        assert!(uid != "0" && uid != "root", "{image}: runs as {user}");
        let entry = last.lines.iter().find_map(|l| l.strip_prefix("ENTRYPOINT ")).unwrap_or_else(|| panic!("{image}"));
        assert!(entry.contains(&format!("/{binary}\"")), "{image}: starts {entry}");
        assert!(bins.contains(&binary.to_owned()), "{binary} is not a binary of the workspace ({bins:?})");
        // The binary is built in the build stage with --locked and release.
        let build_stage = all.iter().find(|s| s.lines.iter().any(|l| l.contains(&format!("--bin {binary}")))).unwrap();
        assert!(build_stage.lines.iter().any(|l| l.contains("cargo build --release --locked")), "{image}");
        // libtorch is in the runtime only where the binary links it.
        let runtime_has_torch = chain.iter().any(|s| s.lines.iter().any(|l| l.contains("libtorch")));
        assert_eq!(runtime_has_torch, torch, "{image}: libtorch in the runtime image");
    }
    // The wheel pinned for the images is the one `make setup` installs for tch.
    let setup = std::fs::read_to_string(repo().join("scripts/setup.sh")).unwrap();
    let torch = std::fs::read_to_string(repo().join("deploy/docker/torch.Dockerfile")).unwrap();
    let version =
        setup.lines().find_map(|l| l.strip_prefix("TORCH_VERSION=")).unwrap().split_whitespace().next().unwrap();
    assert!(torch.contains(&format!("torch=={version}")), "the images' torch is not {version}");
}
