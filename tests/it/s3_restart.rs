//! A restarting S3 gateway costs a pause, not a shard: a run against a SeaweedFS of its
//! own (not the suite's shared server, which other tests use meanwhile) whose server is
//! killed after the first commit and restarted on the same data ten seconds later exits
//! 0 with every input id committed exactly once (`store.retry_max_seconds`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::common::*;

const BUCKET: &str = "adps-restart";
const KEY_ID: &str = "adps-restart";
const SECRET: &str = "adps-restart-secret";
/// How long the server stays down.
const OUTAGE: Duration = Duration::from_secs(10);

/// A private `weed mini` (scripts/s3-server.sh) on ports no other server holds, with its
/// own data directory; stopped and removed on drop.
struct Server {
    env: Vec<(&'static str, String)>,
    s3_port: u16,
}

impl Server {
    fn start(dir: &Path) -> Self {
        let base = free_port_base();
        let env = vec![
            ("ADPS_S3_DIR", dir.to_string_lossy().to_string()),
            ("ADPS_S3_PORT", (base + 33).to_string()),
            ("ADPS_S3_MASTER_PORT", (base + 34).to_string()),
            ("ADPS_S3_VOLUME_PORT", (base + 40).to_string()),
            ("ADPS_S3_FILER_PORT", (base + 88).to_string()),
            ("ADPS_S3_ADMIN_PORT", (base + 46).to_string()),
            ("ADPS_S3_BUCKET", BUCKET.to_string()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ];
        let server = Server {
            env,
            s3_port: base + 33,
        };
        server.script("start");
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Runs `scripts/s3-server.sh CMD` for this server.
    fn script(&self, cmd: &str) {
        let out = Command::new("bash")
            .arg(root().join("scripts/s3-server.sh"))
            .arg(cmd)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "s3-server.sh {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An object_store client of this server (not from the environment, which names the
    /// suite's shared server).
    fn client(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .with_bucket_name(BUCKET)
                .with_region("us-east-1")
                .with_access_key_id(KEY_ID)
                .with_secret_access_key(SECRET)
                .build()
                .unwrap(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/s3-server.sh"))
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
    }
}

/// The first of a few fixed bases whose ports (base..base+100, and the gRPC ports 10000
/// above them, below Linux's ephemeral range) are all free on 127.0.0.1; fixed so that
/// reruns reuse the same ports.
fn free_port_base() -> u16 {
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    (0..20)
        .map(|k| 20000 + 100 * k)
        .find(|&base| {
            [33, 34, 40, 46, 88]
                .iter()
                .all(|off| free(base + off) && free(base + off + 10_000))
        })
        .expect("no free ports for a private S3 server")
}

/// The ids of every committed part under `prefix`: the parts each manifest names, read
/// whole. One place to follow the output layout.
fn committed_ids(
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    prefix: &str,
) -> Vec<String> {
    let output = adps::io::store::Location {
        store: store.clone(),
        prefix: object_store::path::Path::from(prefix),
        url: format!("s3://{BUCKET}/{prefix}"),
    };
    let mut ids = Vec::new();
    for (_, m) in adps::stages::commit::read_manifests(rt.handle(), &output).unwrap() {
        for f in m.files.iter().filter(|f| f.name.starts_with("part-")) {
            let key = output.child(&f.name);
            let bytes = rt
                .block_on(async { store.get(&key).await?.bytes().await })
                .unwrap();
            ids.extend(adps::io::parquet_in::read_string_column(bytes, "id").unwrap());
        }
    }
    ids
}

fn manifest_count(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> usize {
    let dir =
        object_store::path::Path::from(format!("{prefix}/{}", adps::io::layout::manifests_dir()));
    rt.block_on(store.list(Some(&dir)).try_collect::<Vec<_>>())
        .map(|l| l.len())
        .unwrap_or(0)
}

/// The run under test, killed if the test ends first (a timeout or a failed check).
struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails with the last lines of the run's log.
fn fail(log: &Path, what: &str) -> ! {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    panic!("{what}\nlast lines of the run's log:\n{tail}");
}

#[test]
fn a_restarting_s3_gateway_costs_a_pause_not_a_shard() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("weed"));
    let store = server.client();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Enough shards and steps that the run alone takes about 15 s, longer than the outage.
    let shards = 32;
    let local = tmp.path().join("shards");
    let mut want = write_image_shards(&local, shards, 8, [1, 8, 8]);
    for entry in std::fs::read_dir(&local).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let key = object_store::path::Path::from(format!("in/{name}"));
        let bytes = std::fs::read(&path).unwrap();
        rt.block_on(store.put(&key, PutPayload::from(bytes)))
            .unwrap();
    }

    let spec = tmp.path().join("run.toml");
    let model = gaussian_model().to_string_lossy().to_string();
    std::fs::write(
        &spec,
        format!(
            r#"
            [input]
            url = "s3://{BUCKET}/in"
            [output]
            url = "s3://{BUCKET}/out"
            [model]
            dir = "{model}"
            device = "cpu"
            [task]
            operator = "cs:24"
            [sampler]
            steps = 6000
            zeta = 0.5
            [workers]
            batch_size = 4
            [store]
            retry_max_seconds = 60
            "#
        ),
    )
    .unwrap();
    let log = tmp.path().join("run.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let started = Instant::now();
    let mut run = Run(Command::new(env!("CARGO_BIN_EXE_adps"))
        .arg("run")
        .arg(&spec)
        .current_dir(root())
        .env("AWS_ENDPOINT_URL", server.endpoint())
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_ENDPOINT")
        .env_remove("AWS_SESSION_TOKEN")
        // object_store says at info level when it backs off.
        .env("ADPS_LOG", "warn,object_store=info")
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap());

    // Kill the server as soon as the first shard is committed.
    loop {
        if run.0.try_wait().unwrap().is_some() {
            fail(&log, "the run ended before the server was killed");
        }
        if started.elapsed() > Duration::from_secs(120) {
            fail(&log, "no shard committed in 2 minutes");
        }
        let committed = manifest_count(&rt, &store, "out");
        if committed > 0 {
            if committed == shards {
                fail(&log, "every shard was committed before the outage");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let first_commit = started.elapsed();
    server.script("kill");
    let killed = Instant::now();
    std::thread::sleep(OUTAGE);
    if let Some(status) = run.0.try_wait().unwrap() {
        fail(
            &log,
            &format!("the run gave up ({status}) while the server was down"),
        );
    }
    server.script("start");
    let down = killed.elapsed();

    // Then the run finishes by itself.
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            fail(&log, "the run did not finish within 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the run failed ({status}):\n{text}");
    // object_store's own words when it retries.
    let retries: Vec<&str> = text.lines().filter(|l| l.contains("backing off")).collect();
    assert!(
        !retries.is_empty(),
        "object_store never retried: the outage missed the run\n{text}"
    );
    eprintln!(
        "first commit after {first_commit:?}, server down {down:?}, run took {:?}, {} \
         retries logged, the last:\n{}",
        started.elapsed(),
        retries.len(),
        retries[retries.len() - 1]
    );

    let mut got = committed_ids(&rt, store.clone(), "out");
    got.sort();
    want.sort();
    assert_eq!(got, want, "every input id committed exactly once");
    assert_eq!(manifest_count(&rt, &store, "out"), shards);
}
