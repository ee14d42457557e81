//! On a real single-node Slurm cluster (scripts/slurm.sh, started by scripts/test.sh)
//! with input and output in a real S3 bucket (SeaweedFS): a 3-task job array together
//! equals one worker, row for row; an array task cancelled mid-run and resubmitted alone
//! leaves every id committed exactly once.
//!
//! Without a cluster these tests fail, saying how to get one; ADPS_SKIP_SLURM=1 skips them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use object_store::{ObjectStoreExt, PutPayload};

use crate::common::*;

/// Seconds any one `sbatch --wait` or wait for the queue may take.
const WAIT_S: u64 = 300;

/// One scenario at a time: the node has few CPUs, and the cancel needs its timing.
static CLUSTER: Mutex<()> = Mutex::new(());

/// The cluster, held for one test; `None` (said on stderr) with ADPS_SKIP_SLURM=1.
fn cluster() -> Option<MutexGuard<'static, ()>> {
    if std::env::var("ADPS_SKIP_SLURM").is_ok_and(|v| v == "1") {
        eprintln!("ADPS_SKIP_SLURM=1: skipped (no Slurm cluster used)");
        return None;
    }
    let guard = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let how = "run the suite with scripts/test.sh, which starts a single-node cluster with \
               scripts/slurm.sh (needs root and apt; it sets SLURM_CONF), or set \
               ADPS_SKIP_SLURM=1 to skip the Slurm tests";
    let conf = std::env::var("SLURM_CONF").unwrap_or_else(|_| "/etc/slurm/slurm.conf".into());
    assert!(
        Path::new(&conf).exists(),
        "no Slurm cluster: no {conf} (SLURM_CONF); {how}"
    );
    // sinfo retries an unreachable controller for a minute: bound it.
    let o = Command::new("timeout")
        .args(["20", "sinfo", "-h", "-N", "-o", "%t"])
        .output()
        .expect("cannot run timeout");
    match o.status.code() {
        Some(0) => {}
        Some(124) => panic!("no Slurm cluster: sinfo did not answer in 20 s; {how}"),
        Some(126 | 127) => panic!("no Slurm cluster: sinfo is not installed; {how}"),
        _ => panic!(
            "no Slurm cluster: sinfo failed ({}): {}; {how}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
    }
    let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        ["idle", "mix", "alloc"].contains(&state.as_str()),
        "the Slurm node is `{state}`, not idle; {how}"
    );
    Some(guard)
}

fn bucket() -> String {
    std::env::var("ADPS_TEST_S3_BUCKET").unwrap_or_else(|_| {
        panic!(
            "no S3 test server: run the suite with scripts/test.sh, which starts SeaweedFS \
             and sets AWS_ENDPOINT_URL and ADPS_TEST_S3_BUCKET"
        )
    })
}

/// Uploads every file of `dir` under `url`.
fn upload(rt: &tokio::runtime::Runtime, dir: &Path, url: &str) {
    let loc = adps::io::store::open(url).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        rt.block_on(loc.store.put(&loc.child(&name), PutPayload::from(bytes)))
            .unwrap();
    }
}

/// Copies every object under `url` (recursively) into a fresh local folder, keeping
/// relative paths, so that the local-file helpers can read an S3 output.
fn download(rt: &tokio::runtime::Runtime, url: &str) -> tempfile::TempDir {
    let loc = adps::io::store::open(url).unwrap();
    let local = tempdir();
    for meta in loc.list(rt.handle()).unwrap() {
        let rel: PathBuf = meta
            .location
            .prefix_match(&loc.prefix)
            .unwrap()
            .map(|part| part.as_ref().to_string())
            .collect();
        let bytes = rt
            .block_on(async { loc.store.get(&meta.location).await?.bytes().await })
            .unwrap();
        let path = local.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    local
}

/// Names of the objects directly or indirectly under `url` ending in `suffix`.
fn names_ending(rt: &tokio::runtime::Runtime, url: &str, suffix: &str) -> Vec<String> {
    let loc = adps::io::store::open(url).unwrap();
    let mut names: Vec<String> = loc
        .list(rt.handle())
        .unwrap()
        .into_iter()
        .filter_map(|m| m.location.filename().map(str::to_string))
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Every id in every `part-*.parquet` under a (downloaded) output folder, found
/// recursively whatever subfolder the layout puts parts in, sorted, duplicates kept.
/// Each file is read whole, so a torn part fails here.
fn part_ids(out: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                dirs.push(path);
            } else if name.starts_with("part-") && name.ends_with(".parquet") {
                let batch = read_parquet(&path);
                let col = batch.column_by_name("id").unwrap().as_string::<i32>();
                ids.extend((0..batch.num_rows()).map(|r| col.value(r).to_string()));
            }
        }
    }
    ids.sort();
    ids
}

/// The run spec: input and output on S3, the closed-form test model on CPU.
fn write_spec(path: &Path, input: &str, output: &str, steps: usize, batch_size: usize) {
    std::fs::write(
        path,
        format!(
            r#"
[input]
url = "{input}"
[output]
url = "{output}"
[model]
dir = "{model}"
device = "cpu"
threads = 1
[task]
operator = "cs:24"
[sampler]
steps = {steps}
zeta = 0.5
[workers]
batch_size = {batch_size}
restore_workers = 1
"#,
            model = s(&gaussian_model())
        ),
    )
    .unwrap();
}

/// A job submitted by a test; cancelled (by its unique name) when dropped, so that a
/// failing or timed-out test leaves nothing running on the cluster.
struct Job {
    name: String,
    logs: PathBuf,
}

impl Job {
    fn new(tag: &str, logs: &Path) -> Self {
        std::fs::create_dir_all(logs).unwrap(); // Slurm creates no folders for --output
        Self {
            name: format!("adps-it-{}-{tag}", std::process::id()),
            logs: logs.to_path_buf(),
        }
    }

    /// `timeout WAIT_S sbatch --parsable --export=ALL --array=… [extra] --wrap "adps run …"`;
    /// returns sbatch's output (with --wait, its status is the tasks' highest exit code).
    fn submit(&self, array: &str, spec: &Path, extra: &[&str]) -> Output {
        let wrap = format!(
            "'{}' run '{}' --worker-count 3 --log-format json",
            env!("CARGO_BIN_EXE_adps"),
            s(spec)
        );
        let out = Command::new("timeout")
            .arg(WAIT_S.to_string())
            .args(["sbatch", "--parsable", "--export=ALL"])
            .arg(format!("--array={array}"))
            .arg(format!("--job-name={}", self.name))
            .arg(format!("--chdir={}", s(&root())))
            .arg(format!("--output={}/%A_%a.out", s(&self.logs)))
            .args(extra)
            .args(["--wrap", &wrap])
            .output()
            .expect("cannot run sbatch");
        assert_ne!(
            out.status.code(),
            Some(124),
            "sbatch did not return in {WAIT_S} s"
        );
        out
    }

    /// The tasks' logs so far, for failure messages.
    fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(dir) = std::fs::read_dir(&self.logs) {
            let mut paths: Vec<PathBuf> = dir.map(|e| e.unwrap().path()).collect();
            paths.sort();
            for p in paths {
                let body = std::fs::read_to_string(&p).unwrap_or_default();
                text += &format!("--- {}\n{}\n", s(&p), body);
            }
        }
        text
    }

    /// The log of array task `task` of job `id`.
    fn log(&self, id: &str, task: u32) -> String {
        std::fs::read_to_string(self.logs.join(format!("{id}_{task}.out"))).unwrap_or_default()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = Command::new("scancel")
            .arg(format!("--name={}", self.name))
            .output();
    }
}

/// The job id sbatch --parsable printed (`id` or `id;cluster`).
fn job_id(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "no job id from sbatch: {out:?}"
    );
    id
}

/// `JobState` of each array task of a job, from `scontrol show job` (accounting is off,
/// so there is no sacct): (task id, state), sorted.
fn task_states(id: &str) -> Vec<(u32, String)> {
    let out = Command::new("scontrol")
        .args(["show", "job", id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut states = Vec::new();
    for record in text.split("\n\n") {
        let field = |key: &str| {
            record
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .map(str::to_string)
        };
        if let (Some(task), Some(state)) = (field("ArrayTaskId="), field("JobState=")) {
            if let Ok(task) = task.parse() {
                states.push((task, state));
            }
        }
    }
    states.sort();
    states
}

/// Polls `f` every 100 ms until it returns `Some`, failing after `WAIT_S` with `what`.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(WAIT_S),
            "timed out after {WAIT_S} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The summary counts a task printed (`…; shards committed C, failed F, skipped S; …`):
/// (committed, skipped), with no shard failed.
fn summary(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().rev().find(|l| l.starts_with("records ok "))?;
    let counts = line.split("; ").find_map(|p| p.strip_prefix("shards "))?;
    let mut n = counts
        .split(", ")
        .map(|c| c.rsplit(' ').next()?.parse::<u64>().ok());
    let (committed, failed, skipped) = (n.next()??, n.next()??, n.next()??);
    (failed == 0).then_some((committed, skipped))
}

#[test]
fn slurm_job_array_over_s3_equals_one_worker() {
    let Some(_cluster) = cluster() else { return };
    let bucket = bucket();
    let run = format!("s3://{bucket}/slurm-array-{}", std::process::id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempdir();
    let ids = write_image_shards(&tmp.path().join("in"), 7, 3, [1, 8, 8]);
    upload(&rt, &tmp.path().join("in"), &format!("{run}/in"));
    let spec = tmp.path().join("spec.toml");
    // One batch per shard (batch size = shard size), so that both runs make the very
    // same model calls and the bytes can be compared exactly.
    write_spec(&spec, &format!("{run}/in"), &format!("{run}/split"), 8, 3);

    let job = Job::new("array", &tmp.path().join("logs"));
    let out = job.submit("0-2", &spec, &["--wait"]);
    assert!(
        out.status.success(),
        "the array failed: {out:?}\n{}",
        job.logs()
    );
    let id = job_id(&out);
    assert_eq!(
        task_states(&id),
        [0, 1, 2].map(|t| (t, "COMPLETED".to_string())),
        "{}",
        job.logs()
    );
    // Worker i took shards i, i+3, i+6 of the seven: 3, 2 and 2 of them.
    for (task, shards) in [(0, 3), (1, 2), (2, 2)] {
        assert_eq!(
            summary(&job.log(&id, task)),
            Some((shards, 0)),
            "task {task}'s summary\n{}",
            job.logs()
        );
    }

    // The same spec, one worker, straight from here, to another prefix.
    let single = adps(&[
        "run",
        &s(&spec),
        "--set",
        &format!("output.url={run}/single"),
    ]);
    assert_ok(&single);

    let (split, single) = (
        download(&rt, &format!("{run}/split")),
        download(&rt, &format!("{run}/single")),
    );
    let (split, single) = (committed_rows(split.path()), committed_rows(single.path()));
    assert_eq!(split.keys().cloned().collect::<Vec<_>>(), ids);
    for (id, row) in &single {
        assert_eq!(
            &split[id], row,
            "{id}: the array's row differs from one worker's"
        );
    }
    assert_eq!(split, single);
}

#[test]
fn slurm_cancelled_array_task_resubmitted_commits_every_id_once() {
    let Some(_cluster) = cluster() else { return };
    let bucket = bucket();
    let run = format!("s3://{bucket}/slurm-cancel-{}", std::process::id());
    let out_url = format!("{run}/out");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempdir();
    // Twelve shards, four each per worker, slow enough (≈ a second a shard) to cancel
    // worker 1 between its first commit and its last.
    let ids = write_image_shards(&tmp.path().join("in"), 12, 4, [1, 8, 8]);
    upload(&rt, &tmp.path().join("in"), &format!("{run}/in"));
    let spec = tmp.path().join("spec.toml");
    write_spec(&spec, &format!("{run}/in"), &out_url, 8000, 4);
    let worker1: Vec<String> = [1, 4, 7, 10].map(|k| format!("shard-{k:05}.json")).to_vec();
    let committed1 = || {
        names_ending(&rt, &out_url, ".json")
            .into_iter()
            .filter(|n| worker1.contains(n))
            .count()
    };

    let job = Job::new("cancel", &tmp.path().join("logs"));
    let out = job.submit("0-2", &spec, &[]);
    assert!(out.status.success(), "sbatch failed: {out:?}");
    let id = job_id(&out);
    let task1 = format!("{id}_1");
    poll("array task 1 to run", || {
        let states = task_states(&task1);
        match states.first().map(|(_, s)| s.as_str()) {
            Some("RUNNING") => Some(()),
            Some("PENDING") | None => None,
            Some(other) => panic!(
                "task 1 is {other} before it could be cancelled\n{}",
                job.logs()
            ),
        }
    });
    // Mid-run: after its first shard is committed, before its last.
    poll("task 1's first commit", || {
        assert_eq!(
            task_states(&task1).first().map(|(_, s)| s.as_str()),
            Some("RUNNING"),
            "task 1 stopped before it could be cancelled\n{}",
            job.logs()
        );
        (committed1() > 0).then_some(())
    });
    let cancel = Command::new("scancel").arg(&task1).output().unwrap();
    assert!(cancel.status.success(), "scancel: {cancel:?}");
    poll("the array to leave the queue", || {
        let q = Command::new("squeue")
            .args(["-h", "-j", &id])
            .output()
            .unwrap();
        String::from_utf8_lossy(&q.stdout)
            .trim()
            .is_empty()
            .then_some(())
    });
    assert_eq!(
        task_states(&id),
        [(0, "COMPLETED"), (1, "CANCELLED"), (2, "COMPLETED")].map(|(t, s)| (t, s.to_string())),
        "{}",
        job.logs()
    );
    let before = committed1();
    eprintln!(
        "task 1 cancelled after committing {before} of its {} shards",
        worker1.len()
    );
    assert!(
        before < worker1.len(),
        "task 1 committed all its shards before the cancel; make the run longer"
    );
    // What the cancel left: whole parts, no id twice, and only task 1's ids missing.
    let partial = download(&rt, &out_url);
    let partial_ids = part_ids(partial.path());
    let mut unique = partial_ids.clone();
    unique.dedup();
    assert_eq!(unique, partial_ids, "an id is in two parts");
    let missing: Vec<&String> = ids.iter().filter(|i| !partial_ids.contains(i)).collect();
    assert!(!missing.is_empty(), "nothing is missing after the cancel");
    for id in missing {
        let shard = id.trim_start_matches("img-").parse::<usize>().unwrap() / 4;
        assert_eq!(
            shard % 3,
            1,
            "{id} (shard {shard}, not task 1's) is missing"
        );
    }
    let partial_rows = committed_rows(partial.path());

    // Resubmit the cancelled index alone.
    let again = Job::new("resubmit", &tmp.path().join("logs-again"));
    let out = again.submit("1", &spec, &["--wait"]);
    assert!(
        out.status.success(),
        "the resubmitted task failed: {out:?}\n{}",
        again.logs()
    );
    let id2 = job_id(&out);
    assert_eq!(
        summary(&again.log(&id2, 1)),
        Some(((worker1.len() - before) as u64, before as u64)),
        "the resubmitted task skips what task 1 committed and does the rest\n{}",
        again.logs()
    );

    let done = download(&rt, &out_url);
    assert_eq!(part_ids(done.path()), ids, "every id exactly once");
    let rows = committed_rows(done.path());
    assert_eq!(rows.keys().cloned().collect::<Vec<_>>(), ids);
    for (id, row) in &partial_rows {
        assert_eq!(&rows[id], row, "{id} changed across the resubmission");
    }
}
