//! `--cluster`: stats, sql and prepare on a real Ballista cluster of `revgen scheduler` and two `revgen executor`
//! processes on 127.0.0.1, from local files and from the S3 test server, against the local in-process run;
//! executor loss (SIGKILL mid-job), scheduler loss (killed or hung), and an unreachable scheduler.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use revgen_pipeline::source::StoreOptions;
use serde_json::Value;

use crate::support::{revgen, run_err, run_ok};

/// A scheduler and its executors, killed on drop.
struct TestCluster {
    url: String,
    port: u16,
    scheduler: Child,
    executors: Vec<Child>,
    logs: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(dir: &Path, logs: &Path, name: &str, args: &[String]) -> Child {
    let log = fs::File::create(logs.join(format!("{name}.log"))).unwrap();
    // What an executor killed mid-job leaves in its temporary directory (the quarantine of the object it was
    // reading) goes away with the test's directory, not into the machine's /tmp.
    let tmp = dir.join(format!("{name}-tmp"));
    fs::create_dir_all(&tmp).unwrap();
    Command::new(env!("CARGO_BIN_EXE_revgen"))
        .current_dir(dir)
        .env("TMPDIR", &tmp)
        .args(args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start revgen")
}

impl TestCluster {
    /// A scheduler that declares an executor lost after 6 s without a heartbeat, and `n` executors with a
    /// heartbeat every 2 s, one task at a time each, and work directories of their own.
    fn start(dir: &Path, n: usize) -> Self {
        let logs = dir.join("cluster-logs");
        fs::create_dir_all(&logs).unwrap();
        let port = free_port();
        let scheduler_args =
            ["scheduler", "--host", "127.0.0.1", "--port", &port.to_string(), "--executor-timeout", "6"];
        let scheduler = spawn(dir, &logs, "scheduler", &scheduler_args.map(str::to_owned));
        let mut cluster =
            TestCluster { url: format!("df://127.0.0.1:{port}"), port, scheduler, executors: Vec::new(), logs };
        cluster.wait_for_executors(dir, 0);
        for i in 0..n {
            let work = dir.join(format!("executor-{i}"));
            let args: Vec<String> = [
                "executor",
                "--scheduler",
                &format!("127.0.0.1:{port}"),
                "--host",
                "127.0.0.1",
                "--port",
                &free_port().to_string(),
                "--grpc-port",
                &free_port().to_string(),
                "--health-port",
                &free_port().to_string(),
                "--work-dir",
                work.to_str().unwrap(),
                "--concurrent-tasks",
                "1",
                "--heartbeat",
                "2",
            ]
            .map(str::to_owned)
            .into();
            cluster.executors.push(spawn(dir, &cluster.logs, &format!("executor-{i}"), &args));
        }
        cluster.wait_for_executors(dir, n);
        cluster
    }

    fn status(&self, dir: &Path) -> Option<Value> {
        let out = revgen(dir, &["cluster", "status", "--json", "--cluster", &self.url]).output().ok()?;
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    fn wait_for_executors(&self, dir: &Path, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.status(dir).is_some_and(|s| s["executors"].as_array().is_some_and(|e| e.len() == n)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("{n} executors did not register within 60 s:\n{}", self.logs());
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in fs::read_dir(&self.logs).unwrap() {
            let path = entry.unwrap().path();
            let text = fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            all += &format!("--- {}\n{}\n", path.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        all
    }

    fn wait_for_a_running_job(&self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let jobs = self.status(dir).map(|s| s["jobs"].clone()).unwrap_or_default();
            if jobs.as_array().is_some_and(|jobs| jobs.iter().any(|j| j["status"] == "Running")) {
                return;
            }
            assert!(Instant::now() < deadline, "the job did not start:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A REST call to the scheduler.
    fn rest(&self, path: &str) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let body = ureq::get(&url).call().unwrap_or_else(|e| panic!("{url}: {e}")).body_mut().read_to_string().unwrap();
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain(std::iter::once(&mut self.scheduler)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Eight gzipped TSV files of a synthetic dump (one category each, 1% malformed rows) in `dir/dump`.
/// The scheduling policy of each thread of process `pid` (field 41 of /proc/PID/task/TID/stat).
fn scheduling_policies(pid: u32) -> Vec<i32> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let policy = |stat: String| -> i32 {
        // The name in field 2 may hold spaces; the fields after its closing parenthesis start at field 3.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[41 - 3].parse().unwrap()
    };
    tasks.map(|task| policy(fs::read_to_string(task.unwrap().path().join("stat")).unwrap())).collect()
}

fn dump(dir: &Path, rows: usize) -> PathBuf {
    let out = dir.join("dump");
    fs::create_dir_all(&out).unwrap();
    for i in 0..8 {
        let file = out.join(format!("amazon_reviews_us_Cat{i}_v1_00.tsv.gz"));
        let args = ["synth", "--rows", &rows.to_string(), "--seed", &(100 + i).to_string(), "--malformed-rate", "0.01"];
        run_ok(revgen(dir, &args).arg("--categories").arg(format!("Cat{i}")).arg("--out").arg(&file));
    }
    out
}

/// Stats as JSON, without the timing.
fn stats(dir: &Path, args: &[&str]) -> Value {
    let mut report: Value =
        serde_json::from_str(&run_ok(&mut revgen(dir, &[&["stats", "--format", "json"], args].concat()))).unwrap();
    report.as_object_mut().unwrap().remove("elapsed_s");
    report
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).expect("manifest.json")).unwrap()
}

/// What must be equal between two prepare runs of the same input: the shards (names, rows, bytes, sha256), the
/// counts and the quarantine file (rows, sha256).
fn prepared(manifest: &Value) -> Value {
    serde_json::json!({"shards": manifest["shards"], "counts": manifest["counts"], "quarantine": manifest["quarantine"]})
}

/// The names in `dir`, none if it does not exist.
fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir).map_or(Vec::new(), |d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
}

/// A failed job's output directory holds nothing that looks complete: hidden staging at most.
fn assert_only_hidden(dir: &Path) {
    let names = entries(dir);
    assert!(names.iter().all(|n| n.starts_with('.')), "a failed job left {names:?}");
}

fn str_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn stats_sql_and_prepare_on_two_executors_equal_the_local_run() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let input = dump(dir, 1500);
    let input = str_arg(&input);
    let cluster = TestCluster::start(dir, 2);
    // Every thread of a daemon (tokio workers included) runs under SCHED_BATCH (src/process.rs).
    for child in std::iter::once(&cluster.scheduler).chain(&cluster.executors) {
        let policies = scheduling_policies(child.id());
        assert!(policies.len() > 2 && policies.iter().all(|&p| p == libc::SCHED_BATCH), "{policies:?}");
    }

    // Stats, quarantined rows included.
    let local = stats(dir, &["-i", input, "--quarantine", "local-q.jsonl"]);
    let remote = stats(dir, &["-i", input, "--quarantine", "remote-q.jsonl", "--cluster", &cluster.url]);
    assert!(local["counts"]["malformed"].as_u64().unwrap() > 0);
    let strip_path = |mut v: Value| {
        v["quarantine"].as_object_mut().unwrap().remove("path");
        v
    };
    assert_eq!(strip_path(local), strip_path(remote.clone()));
    assert_eq!(fs::read(dir.join("local-q.jsonl")).unwrap(), fs::read(dir.join("remote-q.jsonl")).unwrap());

    // Ad-hoc SQL: the same result rows (stdout holds the result alone).
    let query = "SELECT star_rating, count(*) AS n, sum(helpful_votes) AS votes, max(length(review_body)) AS longest \
                 FROM reviews GROUP BY star_rating ORDER BY star_rating";
    let sql = |extra: &[&str]| {
        run_ok(&mut revgen(dir, &[&["sql", "-i", input, "--format", "csv"], extra, &[query]].concat()))
    };
    let local_sql = sql(&[]);
    assert_eq!(local_sql.lines().count(), 6, "{local_sql}");
    assert_eq!(local_sql, sql(&["--cluster", &cluster.url]));

    // Prepare: byte-identical shards, with .bin shards tokenized on the executors.
    let args = ["prepare", "-i", input, "--shards", "3", "--tokenize", "--val-fraction", "0.1"];
    run_ok(&mut revgen(dir, &[&args[..], &["-o", "local"]].concat()));
    let out = run_ok(&mut revgen(dir, &[&args[..], &["-o", "remote", "--cluster", &cluster.url]].concat()));
    assert!(out.contains("manifest.json"), "{out}");
    assert_eq!(prepared(&manifest(&dir.join("local"))), prepared(&manifest(&dir.join("remote"))));
    assert_eq!(
        fs::read(dir.join("local/quarantine.jsonl")).unwrap(),
        fs::read(dir.join("remote/quarantine.jsonl")).unwrap()
    );
    for shard in manifest(&dir.join("remote"))["shards"].as_array().unwrap() {
        let name = shard["file"].as_str().unwrap();
        assert_eq!(fs::read(dir.join("local").join(name)).unwrap(), fs::read(dir.join("remote").join(name)).unwrap());
    }
    assert!(
        !fs::read_dir(dir.join("remote")).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with('.'))
    );

    // The status lists both executors and the finished jobs; the first stage ran one task per file.
    let status: Value =
        serde_json::from_str(&run_ok(&mut revgen(dir, &["cluster", "status", "--json", "--cluster", &cluster.url])))
            .unwrap();
    assert_eq!(status["executors"].as_array().unwrap().len(), 2, "{status}");
    let jobs = status["jobs"].as_array().unwrap();
    assert!(jobs.iter().filter(|j| j["status"] == "Completed").count() >= 2, "{status}");
    let text = run_ok(&mut revgen(dir, &["cluster", "status", "--cluster", &cluster.url]));
    assert!(text.contains("executors: 2"), "{text}");
    let prepare_job = jobs.iter().find(|j| j["job_name"].as_str().unwrap().starts_with("revgen prepare")).unwrap();
    let stages = cluster.rest(&format!("/api/job/{}/stages", prepare_job["job_id"].as_str().unwrap()));
    let tasks: Vec<usize> =
        stages["stages"].as_array().unwrap().iter().map(|s| s["tasks"].as_array().unwrap().len()).collect();
    assert!(tasks.contains(&8), "one scan task per input file, got tasks per stage {tasks:?}");
}

#[test]
fn stats_and_prepare_from_and_to_s3_on_a_cluster() {
    let endpoint = std::env::var("REVGEN_TEST_S3_ENDPOINT")
        .expect("REVGEN_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts moto_server");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let input = dump(dir, 800);
    let bucket = format!("revgen-cluster-{}", std::process::id());
    ureq::put(&format!("{endpoint}/{bucket}")).send_empty().expect("create bucket");
    let options = StoreOptions { endpoint: Some(endpoint.clone()), ..Default::default() };
    let url = url::Url::parse(&format!("s3://{bucket}/")).unwrap();
    let (_, store) = revgen_pipeline::source::open_store(&url, &options, url.as_str()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for entry in fs::read_dir(&input).unwrap() {
        let path = entry.unwrap().path();
        let key = object_store::path::Path::from(format!("dump/{}", path.file_name().unwrap().to_string_lossy()));
        runtime.block_on(store.put(&key, fs::read(&path).unwrap().into())).unwrap();
    }
    let cluster = TestCluster::start(dir, 2);
    let s3_input = format!("s3://{bucket}/dump/");
    let s3 = ["--endpoint", endpoint.as_str()];

    let local = stats(dir, &["-i", str_arg(&input)]);
    let scratch = format!("s3://{bucket}/scratch");
    let remote = stats(dir, &[&["-i", &s3_input, "--cluster", &cluster.url, "--scratch", &scratch], &s3[..]].concat());
    assert_eq!(local["stats"], remote["stats"]);
    assert_eq!(local["counts"], remote["counts"]);

    run_ok(&mut revgen(dir, &["prepare", "-i", str_arg(&input), "--shards", "2", "-o", "local"]));
    let output = format!("s3://{bucket}/prepared");
    let args = ["prepare", "-i", &s3_input, "--shards", "2", "-o", &output, "--cluster", &cluster.url];
    run_ok(&mut revgen(dir, &[&args[..], &s3[..]].concat()));
    let get = |key: &str| -> Vec<u8> {
        let key = object_store::path::Path::from(key);
        runtime
            .block_on(async { store.get(&key).await?.bytes().await })
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .to_vec()
    };
    let remote: Value = serde_json::from_slice(&get("prepared/manifest.json")).unwrap();
    let local_manifest = manifest(&dir.join("local"));
    assert_eq!(remote["shards"], local_manifest["shards"]);
    assert_eq!(remote["counts"], local_manifest["counts"]);
    for shard in remote["shards"].as_array().unwrap() {
        let name = shard["file"].as_str().unwrap();
        assert_eq!(get(&format!("prepared/{name}")), fs::read(dir.join("local").join(name)).unwrap(), "{name}");
    }
    // Nothing is left of the staging prefix or the scratch directory.
    let listed: Vec<String> = runtime
        .block_on(futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None)))
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .filter(|k| !k.starts_with("dump/"))
        .collect();
    assert!(listed.iter().all(|k| k.starts_with("prepared/") && !k.contains(".revgen-staging")), "{listed:?}");

    // Credentials reach the executors through their environment, never through the job: the scheduler's REST API
    // shows each job's settings.
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    for job in cluster.rest("/api/jobs").as_array().unwrap() {
        let config = cluster.rest(&format!("/api/job/{}/config", job["job_id"].as_str().unwrap()));
        let text = config.to_string();
        assert!(!text.to_lowercase().contains("secret"), "{text}");
        assert!(config.as_object().unwrap().values().all(|v| v.as_str() != Some(secret.as_str())), "{text}");
    }
}

/// An executor killed (SIGKILL) while a prepare job runs. Ballista reruns the lost executor's tasks on the other
/// one (its shuffle output is lost too, so the stages that read it run again): the job completes with the same
/// shards. Should it fail instead, nothing that looks complete may be left.
#[test]
fn prepare_survives_the_loss_of_an_executor() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (mut cluster, job) = prepare_locally_and_on_a_cluster(dir, "120");
    // Kill an executor as soon as the job runs: in its first stage. Ballista 55 wedges when the loss hits the
    // second stage instead (its rollback cancels the survivors' tasks without returning their task slots; see the
    // README's cluster section), which this test would only show as a hang.
    cluster.wait_for_a_running_job(dir);
    cluster.executors[0].kill().unwrap();
    cluster.executors[0].wait().unwrap();
    // The kill must have hit the running job's first stage, or this test shows nothing.
    let status = cluster.status(dir).expect("the scheduler answers");
    let running = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str().unwrap().starts_with("revgen prepare"))
        .unwrap();
    assert_eq!(running["status"], "Running", "the job ended before the executor was killed: {status}");
    assert_eq!(running["completed_stages"], 0, "the kill came after the first stage: {status}");

    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let remote = dir.join("remote");
    if out.status.success() {
        assert_eq!(prepared(&manifest(&dir.join("local"))), prepared(&manifest(&remote)), "{stderr}");
    } else {
        assert!(stderr.contains("failed"), "{stderr}");
        assert_only_hidden(&remote);
        panic!("the job failed after losing an executor instead of recovering:\n{stderr}\n{}", cluster.logs());
    }
}

/// A local `prepare --tokenize` of 8 x 60,000 rows into `dir/local` (enough that the first stage, scan, query and
/// shuffle write, runs for a second or more), then the same job started on a scheduler and two executors into
/// `dir/remote`, with the client's stall timeout (`REVGEN_STALL_TIMEOUT`) at `stall_timeout_s`.
fn prepare_locally_and_on_a_cluster(dir: &Path, stall_timeout_s: &str) -> (TestCluster, Child) {
    let input = dump(dir, 60000);
    let args = ["prepare", "-i", str_arg(&input), "--shards", "2", "--tokenize"];
    run_ok(&mut revgen(dir, &[&args[..], &["-o", "local"]].concat()));
    let cluster = TestCluster::start(dir, 2);
    let job = revgen(dir, &[&args[..], &["-o", "remote", "--cluster", &cluster.url]].concat())
        .env("REVGEN_STALL_TIMEOUT", stall_timeout_s)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (cluster, job)
}

/// An executor killed after the first stage, while the shard writers run. Ballista 55 then either wedges (see the
/// README's cluster section), when the client fails with the stall error, or fails the job itself, when a survivor
/// was reading the lost executor's shuffle output, and the client says so. It must recover or fail, never hang.
#[test]
fn losing_an_executor_in_a_later_stage_never_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (mut cluster, mut job) = prepare_locally_and_on_a_cluster(dir, "10");
    // Kill an executor once the first stage is done, while the shard writers run: the loss that can wedge
    // Ballista 55 (see prepare_survives_the_loss_of_an_executor).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = cluster.status(dir).map(|s| s["jobs"].clone()).unwrap_or_default();
        let job = jobs.as_array().and_then(|jobs| jobs.iter().find(|j| j["status"] == "Running").cloned());
        if job.is_some_and(|j| j["completed_stages"].as_u64() >= Some(1)) {
            break;
        }
        assert!(Instant::now() < deadline, "the job's first stage did not end:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.executors[0].kill().unwrap();
    cluster.executors[0].wait().unwrap();

    // It recovers or fails, and either way within the loss's detection (6 s) plus the stall timeout (10 s) and
    // the watcher's polling; it never hangs.
    let deadline = Instant::now() + Duration::from_secs(90);
    while job.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            job.kill().unwrap();
            panic!("the job hung after losing an executor:\n{}", cluster.logs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let remote = dir.join("remote");
    let outcome = if out.status.success() { "recovered".to_owned() } else { format!("failed:\n{stderr}") };
    eprintln!("after the loss, the job {outcome}");
    if out.status.success() {
        assert_eq!(prepared(&manifest(&dir.join("local"))), prepared(&manifest(&remote)), "{stderr}");
    } else {
        let wedged = stderr.contains("stopped making progress");
        let failed_on_the_loss = stderr.contains("the job failed after") && stderr.contains("an executor was lost");
        assert!(wedged || failed_on_the_loss, "{stderr}");
        assert_only_hidden(&remote);
    }
}

/// Runs `prepare --tokenize` over 8 x 30,000 rows on a scheduler and two executors into `dir/out`, does `lose` to
/// the scheduler once the job runs, and checks that the client then gives up `within` that time: non-zero, naming
/// the cluster, with nothing in `out` that looks complete. Returns the cluster (the executors still run) and the
/// dump.
fn prepare_losing_the_scheduler(dir: &Path, lose: impl FnOnce(&mut Child), within: Duration) -> (TestCluster, PathBuf) {
    let input = dump(dir, 30000);
    let mut cluster = TestCluster::start(dir, 2);
    let args =
        ["prepare", "-i", str_arg(&input), "--shards", "2", "--tokenize", "-o", "out", "--cluster", &cluster.url];
    let job = revgen(dir, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    cluster.wait_for_a_running_job(dir);
    lose(&mut cluster.scheduler);
    let lost = Instant::now();

    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(lost.elapsed() < within, "the client took {:?} to give up", lost.elapsed());
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&cluster.url) && stderr.contains("failed"), "{stderr}");
    assert_only_hidden(&dir.join("out"));
    (cluster, input)
}

/// The scheduler killed (SIGKILL) while a prepare job runs. Ballista 55 keeps jobs in the scheduler's memory only,
/// so the job is lost with it: the client must say so within seconds, exit non-zero and leave nothing that looks
/// complete, and the next run must need no `--overwrite`.
#[test]
fn losing_the_scheduler_fails_the_job_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let kill = |scheduler: &mut Child| {
        scheduler.kill().unwrap();
        scheduler.wait().unwrap();
    };
    let (cluster, input) = prepare_losing_the_scheduler(dir, kill, Duration::from_secs(30));

    // The executors may still be finishing their tasks into the hidden staging; once they are gone, the next run
    // needs no --overwrite and removes what the lost job left.
    drop(cluster);
    run_ok(&mut revgen(dir, &["prepare", "-i", str_arg(&input), "--shards", "2", "-o", "out"]));
    let names = entries(&dir.join("out"));
    assert!(names.contains(&"manifest.json".to_owned()), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with(".revgen-staging")), "{names:?}");
}

/// A scheduler that hangs (SIGSTOP: the connections stay open, nothing answers) while a job runs: the client's
/// HTTP/2 keep-alive pings (every 10 s, 20 s timeout) fail the job instead of waiting for ever.
#[test]
fn a_hung_scheduler_fails_the_job_within_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: kill(2) on our own child's pid; the cluster's Drop kills it (SIGKILL works on a stopped process).
    let stop = |scheduler: &mut Child| {
        assert_eq!(unsafe { libc::kill(scheduler.id() as libc::pid_t, libc::SIGSTOP) }, 0);
    };
    prepare_losing_the_scheduler(dir.path(), stop, Duration::from_secs(60));
}

#[test]
fn an_unreachable_scheduler_is_an_error_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let input = dump(dir.path(), 50);
    let port = free_port();
    let started = Instant::now();
    let cluster = format!("df://127.0.0.1:{port}");
    let out = run_err(&mut revgen(dir.path(), &["stats", "-i", str_arg(&input), "--cluster", &cluster]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert!(stderr.contains(&cluster) && stderr.contains("does not answer"), "{stderr}");
    let out = run_err(&mut revgen(dir.path(), &["cluster", "status", "--cluster", &cluster]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not answer"));
}
