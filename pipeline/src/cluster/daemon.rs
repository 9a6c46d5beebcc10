//! `revgen scheduler` and `revgen executor`: Ballista's scheduler and executor processes, built with our codec
//! (the only extension point our plans need: see [`super::codec`]). Ports and defaults follow Ballista's binaries.
//! Credentials for object stores reach the executors through their environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`),
//! never through a job's settings, which the scheduler's REST API shows (`/api/job/{id}/config`).

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;

use super::codec::RevgenCodec;
use crate::prepare::Tokenize;
use crate::{Error, Result};

/// Settings of `revgen scheduler`.
#[derive(Clone, Debug)]
pub struct SchedulerSettings {
    pub host: String,
    pub port: u16,
    /// The name executors and clients reach this scheduler by (a Kubernetes Service name); default: the host.
    pub external_host: Option<String>,
    /// An executor that has not sent a heartbeat for this long is lost, and its tasks run elsewhere.
    pub executor_timeout_s: u64,
    /// How often a task may fail (an I/O error, a lost executor) before its job fails.
    pub task_max_failures: usize,
}

/// Settings of `revgen executor`.
#[derive(Clone, Debug)]
pub struct ExecutorSettings {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    pub host: String,
    /// The name the scheduler, the other executors and clients reach this executor by; default: its address.
    pub external_host: Option<String>,
    pub port: u16,
    pub grpc_port: u16,
    pub health_port: u16,
    pub work_dir: String,
    /// Tasks at once; 0 = one per core.
    pub concurrent_tasks: usize,
    pub heartbeat_s: u64,
}

/// Ballista's logs (and DataFusion's, through `log`) on stderr, at `RUST_LOG` (default `info`), as its binaries do.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

fn codec(tokenizer: Option<Arc<dyn Tokenize>>) -> Arc<dyn PhysicalExtensionCodec> {
    Arc::new(RevgenCodec::new(tokenizer))
}

fn address(host: &str, port: u16) -> Result<SocketAddr> {
    let spec = format!("{host}:{port}");
    std::net::ToSocketAddrs::to_socket_addrs(&spec)
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::InvalidSetting { name: "--host", reason: format!("cannot resolve {spec}") })
}

/// The name others reach a process bound to `host` by: the host itself, or this machine's name for a wildcard
/// address (executors call the scheduler back at this name).
fn reachable_name(host: &str) -> String {
    if host != "0.0.0.0" && host != "::" {
        return host.to_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn ballista(context: &str) -> impl Fn(ballista_core::error::BallistaError) -> Error + '_ {
    move |e| Error::Cluster { url: context.to_owned(), reason: e.to_string() }
}

/// Runs the scheduler until the process ends. It decodes every plan it schedules, so it knows the tokenizer that
/// `prepare --tokenize` plans name, as the executors do.
pub async fn run_scheduler(settings: &SchedulerSettings, tokenizer: Option<Arc<dyn Tokenize>>) -> Result<()> {
    init_logging();
    let addr = address(&settings.host, settings.port)?;
    let config = SchedulerConfig {
        bind_host: settings.host.clone(),
        bind_port: settings.port,
        external_host: settings.external_host.clone().unwrap_or_else(|| reachable_name(&settings.host)),
        scheduling_policy: TaskSchedulingPolicy::PushStaged,
        executor_timeout_seconds: settings.executor_timeout_s,
        expire_dead_executor_interval_seconds: (settings.executor_timeout_s / 2).clamp(1, 15),
        task_max_failures: settings.task_max_failures,
        override_physical_codec: Some(codec(tokenizer)),
        ..Default::default()
    };
    let context = format!("scheduler {addr}");
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(ballista(&context))?;
    eprintln!("revgen scheduler listening on {addr} (gRPC and REST /api)");
    start_server(cluster, addr, Arc::new(config)).await.map_err(ballista(&context))
}

/// How long an executor waits for its scheduler to come up (pods of a cluster start in any order).
const SCHEDULER_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs an executor until Ctrl-C or SIGTERM (running tasks finish first), or until its scheduler is unreachable.
pub async fn run_executor(settings: &ExecutorSettings, tokenizer: Option<Arc<dyn Tokenize>>) -> Result<()> {
    init_logging();
    std::fs::create_dir_all(&settings.work_dir).map_err(Error::io(&settings.work_dir))?;
    // Ballista's executor tries its scheduler once and gives up; wait for it first, for a bounded time.
    let scheduler = format!("{}:{}", settings.scheduler_host, settings.scheduler_port);
    let started = std::time::Instant::now();
    while tokio::net::TcpStream::connect(&scheduler).await.is_err() {
        if started.elapsed() > SCHEDULER_WAIT {
            return Err(Error::Cluster {
                url: scheduler,
                reason: format!("no scheduler answered within {} s", SCHEDULER_WAIT.as_secs()),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let config = ExecutorProcessConfig {
        bind_host: settings.host.clone(),
        external_host: settings.external_host.clone(),
        port: settings.port,
        grpc_port: settings.grpc_port,
        scheduler_host: settings.scheduler_host.clone(),
        scheduler_port: settings.scheduler_port,
        vcores: settings.concurrent_tasks,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: Some(settings.work_dir.clone()),
        executor_heartbeat_interval_seconds: settings.heartbeat_s,
        override_physical_codec: Some(codec(tokenizer)),
        ..Default::default()
    };
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel();
    let health = ballista_executor::health::spawn_health_server(
        address(&settings.host, settings.health_port)?,
        config.health.clone(),
        health_stopped,
    );
    let context = format!("executor of scheduler {}:{}", settings.scheduler_host, settings.scheduler_port);
    eprintln!(
        "revgen executor: flight {}:{}, grpc {}, health {}, work dir {}",
        settings.host, settings.port, settings.grpc_port, settings.health_port, settings.work_dir
    );
    let result = start_executor_process(Arc::new(config)).await.map_err(ballista(&context));
    let _ = stop_health.send(());
    let _ = health.await;
    result
}
