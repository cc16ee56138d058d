//! The per-service work of a fleet version as a Kubernetes Indexed Job: Kubernetes does
//! the scheduling, placement and retries, this only asks for the Job and waits for it,
//! as Spark's driver does with its executors.
//!
//! The Job comes from a template the operator keeps (`--job-template`, a `batch/v1` Job
//! in YAML: image, resources, security context, the data and model locations in its
//! environment). The driver names it after the version and sets what belongs to this
//! run: `completionMode: Indexed`, one completion per shard, `backoffLimitPerIndex: 1`
//! (a failed shard is retried once, alone, while the others go on), and the first
//! container's arguments `evaluate --version V --shard $(JOB_COMPLETION_INDEX)/N`
//! (Kubernetes substitutes the index it gives each pod). It then polls the Job until it
//! completes or fails; a failure names the shards that failed, so they can be rerun.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};

/// Why the shards' Job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The template is not a Job this driver can use.
    #[error("job template: {0}")]
    Template(String),
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// The Job failed; these shards did not finish.
    #[error(
        "Job {job} failed: shard{} {} of {count} failed after one retry each; rerun them alone with \
         `prescale-trainer evaluate --version {version} --shard <i>/{count}`, then publish",
        if failed.len() == 1 { "" } else { "s" },
        failed.iter().map(|i| format!("{i}/{count}")).collect::<Vec<_>>().join(", ")
    )]
    Failed {
        /// The Job's name.
        job: String,
        /// The version whose shards failed.
        version: String,
        /// The failed indices.
        failed: Vec<u32>,
        /// The shard count.
        count: u32,
    },
    /// The Job failed without naming failed indices (its deadline, or it was deleted).
    #[error("Job {job} failed: {reason}")]
    Ended {
        /// The Job's name.
        job: String,
        /// The Job's failure condition's reason and message.
        reason: String,
    },
}

/// Reads a Job template from YAML.
pub fn template(yaml: &str) -> Result<Job, JobError> {
    let job: Job = serde_yaml_ng::from_str(yaml).map_err(|e| JobError::Template(e.to_string()))?;
    let containers = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).map(|p| p.containers.len());
    if containers.unwrap_or(0) == 0 {
        return Err(JobError::Template("spec.template.spec.containers is empty: nothing to run".into()));
    }
    Ok(job)
}

/// The Job of a fleet version's shards, from `template`: named after the version,
/// Indexed, one completion per shard, at most `parallelism` pods at once, each failed
/// index retried once.
pub fn shards_job(template: &Job, version: &str, shards: u32, parallelism: u32) -> Job {
    let mut job = template.clone();
    let base = job.metadata.name.clone().unwrap_or_else(|| "prescale-evaluate".into());
    // Job names are DNS labels: lower case, at most 63 characters.
    let name: String = format!("{base}-{}", version.to_ascii_lowercase()).chars().take(63).collect();
    job.metadata.name = Some(name.trim_end_matches('-').to_owned());
    job.metadata.generate_name = None;
    job.metadata.resource_version = None;
    let labels = job.metadata.labels.get_or_insert_with(Default::default);
    labels.insert("prescale.io/fleet-version".into(), version.to_ascii_lowercase());
    let spec = job.spec.get_or_insert_with(Default::default);
    spec.completion_mode = Some("Indexed".into());
    spec.completions = Some(shards as i32);
    spec.parallelism = Some(parallelism.clamp(1, shards) as i32);
    spec.backoff_limit_per_index = Some(1);
    // Every shard gets its chance even when others fail: the failure names them all.
    spec.max_failed_indexes = Some(shards as i32);
    spec.backoff_limit = None;
    let pod = spec.template.spec.get_or_insert_with(Default::default);
    // Retries per index need pods that are not restarted in place.
    pod.restart_policy = Some("Never".into());
    if let Some(container) = pod.containers.first_mut() {
        let args = container.args.get_or_insert_with(Vec::new);
        args.extend([
            "evaluate".to_owned(),
            "--version".to_owned(),
            version.to_owned(),
            "--shard".to_owned(),
            format!("$(JOB_COMPLETION_INDEX)/{shards}"),
        ]);
    }
    job
}

/// Creates `job` in the namespace of `jobs` and polls it every `poll` until it completes
/// (`Ok`) or fails (naming the failed shards).
pub async fn run(jobs: &Api<Job>, job: &Job, version: &str, shards: u32, poll: Duration) -> Result<(), JobError> {
    let created = jobs.create(&PostParams::default(), job).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    eprintln!("created Indexed Job {name}: {shards} shards of {version}");
    let mut last = String::new();
    loop {
        let job = jobs.get(&name).await?;
        let status = job.status.unwrap_or_default();
        let condition =
            |kind: &str| status.conditions.iter().flatten().find(|c| c.type_ == kind && c.status == "True").cloned();
        let progress = format!(
            "{} of {shards} shards done, {} running, {} failed",
            status.succeeded.unwrap_or(0),
            status.active.unwrap_or(0),
            status.failed.unwrap_or(0)
        );
        if progress != last {
            eprintln!("Job {name}: {progress}");
            last = progress;
        }
        if condition("Complete").is_some() {
            return Ok(());
        }
        if let Some(failed) = condition("Failed") {
            let indices = status.failed_indexes.as_deref().map(parse_indexes).unwrap_or_default();
            if indices.is_empty() {
                let reason = format!("{}: {}", failed.reason.unwrap_or_default(), failed.message.unwrap_or_default());
                return Err(JobError::Ended { job: name, reason });
            }
            return Err(JobError::Failed { job: name, version: version.to_owned(), failed: indices, count: shards });
        }
        tokio::time::sleep(poll).await;
    }
}

/// The indices of a Job's `status.failedIndexes`: `1,3-5` is 1, 3, 4 and 5.
pub fn parse_indexes(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(100_000)));
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: prescale-evaluate
  namespace: prescale
spec:
  backoffLimit: 6
  template:
    spec:
      restartPolicy: OnFailure
      containers:
        - name: trainer
          image: prescale/trainer:latest
          args: ["--train-config", "/etc/prescale/train.toml"]
"#;

    #[test]
    fn the_shards_job_is_indexed_retries_each_index_once_and_passes_the_index() {
        let job = shards_job(&template(TEMPLATE).unwrap(), "20261202T043000123Z", 4, 8);
        assert_eq!(job.metadata.name.as_deref(), Some("prescale-evaluate-20261202t043000123z"));
        let spec = job.spec.unwrap();
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        assert_eq!((spec.completions, spec.parallelism), (Some(4), Some(4)), "no more pods than shards");
        assert_eq!((spec.backoff_limit_per_index, spec.backoff_limit), (Some(1), None));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let args = pod.containers[0].args.clone().unwrap();
        assert_eq!(
            args,
            [
                "--train-config",
                "/etc/prescale/train.toml",
                "evaluate",
                "--version",
                "20261202T043000123Z",
                "--shard",
                "$(JOB_COMPLETION_INDEX)/4"
            ]
        );
        assert!(template("kind: Job\nspec: {template: {spec: {containers: []}}}").is_err());
    }

    #[test]
    fn failed_indexes_are_read_as_kubernetes_writes_them() {
        assert_eq!(parse_indexes("1,3-5,9"), vec![1, 3, 4, 5, 9]);
        assert_eq!(parse_indexes(""), Vec::<u32>::new());
        assert_eq!(parse_indexes("x,2"), vec![2]);
    }
}
