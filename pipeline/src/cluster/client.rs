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
            let agent = ureq::Agent::config_builder()
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(Some(CONNECT_TIMEOUT * 2))
                .build()
                .new_agent();
            let mut response = agent.get(&url).call().map_err(|e| match e {
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
        let watcher = tokio::spawn(watch(self.clone(), name.clone(), tx));
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
                Some(job) = rx.recv() => {
                    progress(&job);
                    last = Some(job);
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
        let batches = result
            .map_err(|e| self.error(format!("the job failed after {:.1} s: {e}", started.elapsed().as_secs_f64())))?;
        Ok((batches, last))
    }
}

/// Sends the job's state whenever it changes, until aborted.
async fn watch(cluster: Cluster, name: String, tx: tokio::sync::mpsc::UnboundedSender<JobInfo>) {
    let mut last = None;
    loop {
        if let Ok(Some(job)) = cluster.job(&name).await {
            let key = (job.status.clone(), job.completed_stages, job.percent_complete);
            if last.as_ref() != Some(&key) {
                last = Some(key);
                let _ = tx.send(job);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
    fn parses_scheduler_urls() {
        let c = Cluster::parse("df://10.0.0.5:6000").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("10.0.0.5", 6000));
        assert_eq!(Cluster::parse("df://scheduler").unwrap().port, 50050);
        assert!(Cluster::parse("http://x:1").is_err());
        assert!(Cluster::parse("df://:1").is_err());
    }
}
