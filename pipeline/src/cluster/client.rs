//! The client side: submitting a job's physical plan to the scheduler, following its progress, and the cluster's
//! status (`revgen cluster status`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista_core::config::{
    BALLISTA_ADAPTIVE_PLANNER_ENABLED, BALLISTA_CLIENT_GRPC_CONNECT_TIMEOUT_SECONDS,
    BALLISTA_CLIENT_GRPC_HTTP2_KEEPALIVE_INTERVAL_SECONDS, BALLISTA_JOB_NAME,
};
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::codec::RevgenCodec;
use crate::{Error, Result};

/// How long the scheduler may take to answer before a job gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a running job may go with no task running anywhere on a cluster that has executors before the client
/// gives up on it (`REVGEN_STALL_TIMEOUT`, seconds, overrides it). Ballista 55 can wedge after losing an executor: rolling a
/// stage back cancels the survivors' tasks without returning their task slots (the README's cluster section),
/// and the job then waits forever. Nothing running anywhere while the job is unfinished tells that apart from a
/// slow task (which runs) and from a job queued behind other jobs (whose tasks run); a lost executor's tasks count
/// as running until the scheduler declares it lost.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// An HTTP client for the scheduler's REST API: a call gives up after [`CONNECT_TIMEOUT`] to connect and twice that
/// in all.
fn rest_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(CONNECT_TIMEOUT * 2))
        .build()
        .new_agent()
}

/// A Ballista cluster, named by its scheduler: `df://host[:port]` (port 50050 by default).
#[derive(Clone, Debug)]
pub struct Cluster {
    pub url: String,
    host: String,
    port: u16,
}

/// What `revgen cluster status` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub scheduler: String,
    pub version: String,
    pub executors: Vec<ExecutorInfo>,
    pub jobs: Vec<JobInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecutorInfo {
    pub id: String,
    pub host: String,
    pub port: u64,
    pub task_slots: Option<u64>,
    /// Milliseconds since the epoch of the last heartbeat.
    pub last_seen: Option<u64>,
}

/// A job as the scheduler reports it: in `revgen cluster status`, and as a running job's progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobInfo {
    pub job_id: String,
    pub job_name: String,
    pub status: String,
    pub completed_stages: u64,
    pub num_stages: u64,
    pub percent_complete: u64,
}

impl Cluster {
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Cluster { url: url.to_owned(), reason: reason.to_owned() };
        let rest = url.strip_prefix("df://").ok_or_else(|| invalid("expected df://host[:port]"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| invalid("the port is not a number"))?),
            None => (rest, 50050),
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        Ok(Cluster { url: url.to_owned(), host: host.to_owned(), port })
    }

    fn http(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Cluster { url: self.url.clone(), reason: reason.into() }
    }

    /// GETs a path of the scheduler's REST API, within [`CONNECT_TIMEOUT`] per attempt.
    async fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.http());
        let cluster = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut response = rest_agent().get(&url).call().map_err(|e| match e {
                ureq::Error::Io(_)
                | ureq::Error::ConnectionFailed
                | ureq::Error::HostNotFound
                | ureq::Error::Timeout(_) => cluster.error(format!("the scheduler does not answer at {url}: {e}")),
                other => cluster.error(format!("GET {url}: {other}")),
            })?;
            let body = response.body_mut().read_to_string().map_err(|e| cluster.error(format!("GET {url}: {e}")))?;
            serde_json::from_str(&body).map_err(|e| cluster.error(format!("GET {url}: {e}")))
        })
        .await
        .expect("the REST call does not panic")
    }

    /// The scheduler's version, which also checks that it answers.
    pub async fn version(&self) -> Result<String> {
        let version = self.get("/api/version").await?;
        Ok(version.get("version").and_then(Value::as_str).map_or_else(|| version.to_string(), str::to_owned))
    }

    pub async fn status(&self) -> Result<ClusterStatus> {
        let version = self.version().await?;
        let executors: Vec<ExecutorResponse> = self.get_as("/api/executors").await?;
        let executors = executors
            .into_iter()
            .map(|e| ExecutorInfo {
                id: e.id,
                host: e.host,
                port: e.port,
                task_slots: e.specification.vcores,
                last_seen: e.last_seen,
            })
            .collect();
        Ok(ClusterStatus { scheduler: self.url.clone(), version, executors, jobs: self.jobs().await? })
    }

    /// The scheduler's jobs (`/api/jobs`, whose fields are [`JobInfo`]'s).
    async fn jobs(&self) -> Result<Vec<JobInfo>> {
        self.get_as("/api/jobs").await
    }

    /// The job named `name`, once the scheduler lists it.
    async fn job(&self, name: &str) -> Result<Option<JobInfo>> {
        Ok(self.jobs().await?.into_iter().find(|j| j.job_name == name))
    }

    /// Whether the cluster has executors and yet no task of its running `jobs` runs. A cluster without executors is
    /// waiting for capacity (Ballista fails the jobs left on it once all executors are lost), not stalled.
    async fn is_idle_with_executors(&self, jobs: &[JobInfo]) -> Result<bool> {
        let executors: Vec<Value> = self.get_as("/api/executors").await?;
        if executors.is_empty() {
            return Ok(false);
        }
        for job in jobs.iter().filter(|j| j.status == "Running") {
            if has_running_task(&self.get(&format!("/api/job/{}/stages", job.job_id)).await?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Asks the scheduler to cancel a job (`PATCH /api/job/{id}`).
    async fn cancel(&self, job_id: &str) -> Result<()> {
        let url = format!("{}/api/job/{job_id}", self.http());
        let cluster = self.clone();
        tokio::task::spawn_blocking(move || {
            rest_agent().patch(&url).send_empty().map(drop).map_err(|e| cluster.error(format!("PATCH {url}: {e}")))
        })
        .await
        .expect("the REST call does not panic")
    }

    /// GETs a path of the REST API into `T`.
    async fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        serde_json::from_value(self.get(path).await?).map_err(|e| self.error(format!("GET {path}: {e}")))
    }

    /// Runs `plan` on the cluster and collects its result. `config` is the session's (batch size, partitions);
    /// `progress` sees the job's state whenever it changes. Job names are unique per run, which is how the job is
    /// found in the scheduler's REST API (a physical-plan submission does not return its id).
    pub async fn collect(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &SessionConfig,
        job: &str,
        progress: &mut (dyn FnMut(&JobInfo) + Send),
    ) -> Result<(Vec<RecordBatch>, Option<JobInfo>)> {
        // A scheduler that is down or unreachable is an error within seconds, not a hang.
        self.version().await?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let name = format!("revgen {job} {}-{}", std::process::id(), nanos.as_nanos());
        let session = config
            .clone()
            .upgrade_for_ballista()
            .set_str(BALLISTA_JOB_NAME, &name)
            // Long jobs must survive the loss of an executor; the adaptive planner does not (DESIGN.md).
            .set_bool(BALLISTA_ADAPTIVE_PLANNER_ENABLED, false)
            .set_u64(BALLISTA_CLIENT_GRPC_CONNECT_TIMEOUT_SECONDS, CONNECT_TIMEOUT.as_secs())
            // The job's status stream is the client's only sign of life from the scheduler: a scheduler that
            // vanishes without closing the connection is noticed after this ping interval plus tonic's 20 s
            // keep-alive timeout (Ballista's default interval, 300 s, would leave the client waiting minutes).
            .set_u64(BALLISTA_CLIENT_GRPC_HTTP2_KEEPALIVE_INTERVAL_SECONDS, 10);
        let codec = RevgenCodec::new(None);
        let session_id = format!("revgen-{}", std::process::id());
        // Submission waits for the job (push mode) and then streams the result; the job is followed meanwhile.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = tokio::spawn(watch(self.clone(), name.clone(), stall_timeout(), tx));
        let started = Instant::now();
        let collecting = async {
            let config = session.ballista_config();
            let stream =
                execute_physical_plan::<PhysicalPlanNode>(self.http(), &config, plan, &codec, session_id, session)
                    .await?;
            stream.try_collect::<Vec<RecordBatch>>().await
        };
        tokio::pin!(collecting);
        let mut last = None;
        let result = loop {
            tokio::select! {
                result = &mut collecting => break result,
                Some(event) = rx.recv() => match event {
                    Watched::Progress(job) => {
                        progress(&job);
                        last = Some(job);
                    }
                    Watched::Stalled { job_id, idle } => {
                        watcher.abort();
                        // Best effort: the scheduler stops the job's tasks; the client fails either way.
                        let _ = self.cancel(&job_id).await;
                        return Err(self.error(format!(
                            "job {job_id} stopped making progress: no task ran anywhere on the cluster for {} s \
                             (Ballista 55 can wedge after losing an executor: see the README's cluster section); \
                             restart the executors and the scheduler, then resubmit",
                            idle.as_secs()
                        )));
                    }
                }
            }
        };
        watcher.abort();
        // The final state, as the scheduler records it.
        if let Ok(Some(job)) = self.job(&name).await {
            let seen = last.as_ref().is_some_and(|l: &JobInfo| {
                (&l.status, l.completed_stages, l.percent_complete)
                    == (&job.status, job.completed_stages, job.percent_complete)
            });
            if !seen {
                progress(&job);
            }
            last = Some(job);
        }
        let batches = result.map_err(|e| {
            let e = e.to_string();
            let hint = if lost_a_peer(&e) { LOST_PEER_HINT } else { "" };
            self.error(format!("the job failed after {:.1} s: {e}{hint}", started.elapsed().as_secs_f64()))
        })?;
        Ok((batches, last))
    }
}

/// What the watcher of a job reports.
enum Watched {
    Progress(JobInfo),
    Stalled { job_id: String, idle: Duration },
}

/// Sends the job's state whenever it changes, and [`Watched::Stalled`] once the running job has had no task
/// running anywhere on the cluster for `stall_timeout`; until aborted.
async fn watch(
    cluster: Cluster,
    name: String,
    stall_timeout: Duration,
    tx: tokio::sync::mpsc::UnboundedSender<Watched>,
) {
    const POLL: Duration = Duration::from_millis(500);
    // The cluster-wide check costs a REST call per running job: every 5 s is plenty for a timeout of minutes.
    const CHECK: Duration = Duration::from_secs(5);
    let mut last = None;
    let mut idle_since: Option<Instant> = None;
    let mut checked: Option<Instant> = None;
    loop {
        let jobs = cluster.jobs().await.unwrap_or_default();
        if let Some(job) = jobs.iter().find(|j| j.job_name == name) {
            let key = (job.status.clone(), job.completed_stages, job.percent_complete);
            if last.as_ref() != Some(&key) {
                last = Some(key);
                let _ = tx.send(Watched::Progress(job.clone()));
            }
            if job.status == "Running" && checked.is_none_or(|at| at.elapsed() >= CHECK) {
                checked = Some(Instant::now());
                match cluster.is_idle_with_executors(&jobs).await {
                    Ok(false) => idle_since = None,
                    Ok(true) => {
                        let idle = idle_since.get_or_insert_with(Instant::now).elapsed();
                        if idle >= stall_timeout {
                            let _ = tx.send(Watched::Stalled { job_id: job.job_id.clone(), idle });
                            return;
                        }
                    }
                    // A scheduler that does not answer is the job stream's to report.
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn stall_timeout() -> Duration {
    std::env::var("REVGEN_STALL_TIMEOUT").ok().and_then(|s| s.parse().ok()).map_or(STALL_TIMEOUT, Duration::from_secs)
}

/// Added to a failure that [`lost_a_peer`].
const LOST_PEER_HINT: &str = "\n(a connection between the cluster's processes broke mid-job, most likely because an \
     executor was lost while another read its shuffle output, and Ballista 55 fails the job rather than computing \
     that output again: see the README's cluster section; once the executors are healthy, resubmit: the job is \
     idempotent)";

/// Whether a job's failure message shows a task failing on a broken connection to another cluster process: an
/// executor lost while a task streams its shuffle output fails that task with the transport's error, which
/// Ballista 55 does not treat as a fetch failure (whose output it would compute again) but as the task's own
/// error, failing the job. (A lost scheduler breaks the client's own stream instead, with no task named.)
fn lost_a_peer(message: &str) -> bool {
    const SIGNS: [&str; 7] = [
        "broken pipe",
        "connection reset",
        "connection refused",
        "h2 protocol error",
        "transport error",
        "premature end of the stream",
        "shuffle fetch partition error",
    ];
    let message = message.to_lowercase();
    message.contains("task failed") && SIGNS.iter().any(|sign| message.contains(sign))
}

/// Whether a stages listing (`/api/job/{id}/stages`) has a task running.
fn has_running_task(stages: &Value) -> bool {
    let stages = stages.get("stages").and_then(Value::as_array).into_iter().flatten();
    let tasks = stages.filter_map(|s| s.get("tasks").and_then(Value::as_array)).flatten();
    tasks.filter_map(|t| t.get("status").and_then(Value::as_str)).any(|status| status == "Running")
}

/// An executor as `/api/executors` lists it (the fields used here).
#[derive(Deserialize)]
struct ExecutorResponse {
    id: String,
    host: String,
    port: u64,
    last_seen: Option<u64>,
    specification: ExecutorSpecification,
}

#[derive(Deserialize)]
struct ExecutorSpecification {
    /// Task slots (Ballista 55 calls them vcores).
    vcores: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_running_tasks_in_a_stages_listing() {
        // The shape of Ballista 55's `/api/job/{id}/stages` (fields not read here left out); a stage's pending
        // tasks are not listed, and a rolled-back stage lists none.
        let listing = |statuses: &[&[&str]]| {
            let stages: Vec<Value> = statuses
                .iter()
                .enumerate()
                .map(|(i, tasks)| {
                    let tasks: Vec<Value> = tasks.iter().map(|s| serde_json::json!({"id": 0, "status": s})).collect();
                    serde_json::json!({"stage_id": (i + 1).to_string(), "stage_status": "Running", "tasks": tasks})
                })
                .collect();
            serde_json::json!({ "stages": stages })
        };
        assert!(has_running_task(&listing(&[&["Successful", "Running"], &[]])));
        assert!(!has_running_task(&listing(&[&["Successful", "Successful"], &[]])));
        assert!(!has_running_task(&listing(&[&[], &[]])));
        assert!(!has_running_task(&serde_json::json!({})));
    }

    #[test]
    fn tells_failures_from_a_lost_peer() {
        // As Ballista 55 reported a job whose executor was killed while another read its shuffle output (CI,
        // 2026-12-06).
        let lost = "Execution error: Job 038JB5N56Y000 failed: Job failed due to stage 2 failed: Task failed due \
                    to runtime execution error: DataFusionError(Shared(External(ArrowError(IpcError(\"Arrow error: \
                    Ipc error: code: 'Unknown error', message: \\\"h2 protocol error: error reading a body from \
                    connection\\\", source: hyper::Error(Body, Error { kind: Io(Custom { kind: BrokenPipe, error: \
                    \\\"stream closed because of a broken pipe\\\" }) })\")))))";
        assert!(lost_a_peer(lost));
        // Ballista's own words for a shuffle stream that ends before its first message.
        assert!(lost_a_peer(
            "Job failed due to stage 2 failed: Task failed due to runtime execution error: Arrow error: Ipc error: \
             Premature end of the stream while decoding schema"
        ));
        // A task's own error, and the client's stream from a lost scheduler, are something else.
        assert!(!lost_a_peer(
            "Job failed due to stage 1 failed: Task failed due to runtime execution error: Arrow error: \
             Parser error: invalid number"
        ));
        assert!(!lost_a_peer("status: Unavailable, message: \"error trying to connect: transport error\""));
    }

    #[test]
    fn parses_scheduler_urls() {
        let c = Cluster::parse("df://10.0.0.5:6000").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("10.0.0.5", 6000));
        assert_eq!(Cluster::parse("df://scheduler").unwrap().port, 50050);
        assert!(Cluster::parse("http://x:1").is_err());
        assert!(Cluster::parse("df://:1").is_err());
    }
}
