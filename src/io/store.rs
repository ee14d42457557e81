//! Object stores behind one URL syntax: `file://` (or a plain path), `s3://bucket/prefix`
//! and `memory://name/prefix` (tests).
//!
//! S3 takes the usual AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
//! AWS_REGION, AWS_ENDPOINT_URL); plain-http endpoints are allowed because local
//! S3 servers (MinIO, SeaweedFS) rarely have TLS. Credentials never appear in any
//! `Display` of a [`Location`].
//!
//! Retries (S3 only; local and memory stores have none). object_store 0.14 retries each
//! HTTP request itself: 5xx, 408 and 429 answers, refused connections and connections
//! closed before an answer on every request, and timeouts and resets on idempotent ones
//! (GET, HEAD, overwriting PUT, multipart steps; not DELETE). Between tries it sleeps by
//! "decorrelated jitter": first `init_backoff`, then each sleep drawn uniformly between
//! `init_backoff` and `base` × the previous one, capped at `max_backoff`. It gives up at
//! `max_retries` retries, or at the first failure once `retry_timeout` has passed since
//! the request's first try, whichever comes first. With base 2 the sleeps hardly grow
//! (each is on average only init/2 longer than the last), so the ten retries we used to
//! allow were spent in 2–3 s and a gateway that restarts in 5–7 s failed the shard. The
//! budget here is therefore time alone ([`Retry`]; `store.retry_max_seconds` in a run
//! spec): it is `retry_timeout`, and `max_retries` is derived so that it never ends the
//! retries first. object_store's own loop honours that for every error class it retries,
//! refused connections included, so no wrapper of ours is needed; what it does not retry
//! (403, 404 and other 4xx, undecodable answers) is not cured by waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

/// A prefix inside an object store, parsed from a URL.
#[derive(Clone)]
pub struct Location {
    /// The store itself.
    pub store: Arc<dyn ObjectStore>,
    /// The key prefix everything of this location lives under.
    pub prefix: Path,
    /// The URL the user gave, without credentials, for messages.
    pub url: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// The retry budget of a run's store requests, in seconds, where a spec does not set
/// `store.retry_max_seconds`: enough to ride out a restarting S3 gateway (tens of seconds)
/// without hiding a store that is really down.
pub const DEFAULT_RETRY_MAX_SECONDS: u64 = 120;

/// The most a budget may be: object_store re-sends a request with its first signature,
/// and advises keeping retries under five minutes so that it does not expire.
pub const MAX_RETRY_MAX_SECONDS: u64 = 300;

/// How long one store request is retried (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Retry a failing request until this long after its first try; zero: never retry.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self::seconds(DEFAULT_RETRY_MAX_SECONDS)
    }
}

impl Retry {
    /// The shortest sleep between two tries; the first sleep is exactly this.
    const INIT_BACKOFF: Duration = Duration::from_millis(100);
    /// The longest sleep: a gateway that is back is noticed at most this late.
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    /// Decorrelated jitter grows only for a base above e (the log of the next sleep over
    /// the last has mean ln(base) − 1); 3 is AWS's choice.
    const BASE: f64 = 3.0;

    /// A budget of `seconds`.
    pub fn seconds(seconds: u64) -> Self {
        Self {
            max: Duration::from_secs(seconds),
        }
    }

    /// object_store's settings for this budget. `max_retries` is one more than the
    /// number of shortest sleeps that fit in the budget: by the time that many retries
    /// are spent, more than the budget has passed, so the time check always ends the
    /// retries first.
    pub fn config(&self) -> RetryConfig {
        let max_retries = if self.max.is_zero() {
            0
        } else {
            usize::try_from(self.max.as_nanos() / Self::INIT_BACKOFF.as_nanos())
                .map_or(usize::MAX, |n| n.saturating_add(1))
        };
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Self::INIT_BACKOFF,
                max_backoff: Self::MAX_BACKOFF,
                base: Self::BASE,
            },
            max_retries,
            retry_timeout: self.max,
        }
    }
}

/// In-memory stores by name, so that two `memory://x/…` URLs in one process meet.
fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Strips user info (`s3://key:secret@bucket`) from a URL before it is shown anywhere.
/// Says once when no credentials are in the environment: the S3 client then asks the
/// instance metadata service (EC2 and ECS roles), which off the cloud fails after a while
/// with a message about 169.254.169.254 that names no variable.
fn warn_without_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if set("AWS_ACCESS_KEY_ID")
        || set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    {
        return;
    }
    ONCE.call_once(|| {
        tracing::warn!(
            "no AWS credentials in the environment (AWS_ACCESS_KEY_ID, a web identity \
             token, a container role): asking the instance metadata service for a role; \
             ~/.aws profiles are not read"
        )
    });
}

/// `text` with the `user:password@` part of every URL in it removed: an error chain may
/// quote a URL as it was typed (a flag, a spec entry, an operator), credentials and all.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends where the path does, or where the quoting around it does.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || "`'\")]".contains(c))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        out.push_str(
            authority
                .rfind('@')
                .map_or(authority, |at| &authority[at + 1..]),
        );
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn redact(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Opens the store a URL (or a local path) points at, for reading: a local directory
/// must exist. S3 requests get the default retry budget.
pub fn open(url_or_path: &str) -> Result<Location> {
    open_with(url_or_path, false, Retry::default())
}

/// Opens a location for writing: a local directory is created if missing.
pub fn open_output(url_or_path: &str) -> Result<Location> {
    open_with(url_or_path, true, Retry::default())
}

/// [`open`] with a retry budget of its own.
pub fn open_with_retry(url_or_path: &str, retry: Retry) -> Result<Location> {
    open_with(url_or_path, false, retry)
}

/// [`open_output`] with a retry budget of its own.
pub fn open_output_with_retry(url_or_path: &str, retry: Retry) -> Result<Location> {
    open_with(url_or_path, true, retry)
}

/// The runtime every store request runs on. Multi-threaded on purpose: the stages and
/// commands call `Handle::block_on`, which on a current-thread runtime never drives the
/// network or timers (only `Runtime::block_on` does), so an S3 request there waits for
/// ever, retries and all.
pub fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("adps-io")
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")
}

/// The local folder a path or `file://` URL names (None for other stores and for what
/// does not parse), without touching the disk.
pub fn local_dir(url_or_path: &str) -> Option<std::path::PathBuf> {
    if url_or_path.contains("://") {
        url::Url::parse(url_or_path).ok()?.to_file_path().ok()
    } else {
        std::path::absolute(url_or_path).ok()
    }
}

fn open_with(url_or_path: &str, create: bool, retry: Retry) -> Result<Location> {
    let url = if url_or_path.contains("://") {
        url::Url::parse(url_or_path)
            .with_context(|| format!("`{url_or_path}` is not a valid URL"))?
    } else {
        let abs = std::path::absolute(url_or_path)
            .with_context(|| format!("cannot resolve path `{url_or_path}`"))?;
        url::Url::from_directory_path(&abs)
            .map_err(|_| anyhow::anyhow!("cannot turn `{}` into a file URL", abs.display()))?
    };
    let shown = redact(&url);
    if !url.username().is_empty() || url.password().is_some() {
        // They would not sign anything (credentials come from the environment) and would
        // be copied into manifests, progress records and messages.
        bail!(
            "`{shown}`: credentials in a URL are not used; set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN for temporary keys) instead"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!(
            "`{shown}`: a `?` or `#` ends an object key in a URL, so the prefix would lose \
             what follows; write them as %3F and %23"
        );
    }
    // The URL's path is percent-encoded (`my%20data`); an object store's keys are not.
    // (A local folder is opened as a directory, `..` and all.)
    let key_prefix = || {
        Path::from_url_path(url.path().trim_matches('/'))
            .with_context(|| format!("`{shown}` is no valid object key prefix"))
    };
    match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|_| anyhow::anyhow!("`{shown}` is not a local path"))?;
            // Without the trailing `/` of a directory URL, which stat refuses on a file.
            let bare: std::path::PathBuf = dir.components().collect();
            if bare.is_file() {
                bail!(
                    "{} is a file: inputs and outputs are folders (prefixes) of Parquet \
                     shards; give the folder that holds it",
                    bare.display()
                );
            }
            if create {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create directory {}", dir.display()))?;
            } else if !dir.is_dir() {
                bail!("{} does not exist", dir.display());
            }
            let store = LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("cannot open {}", dir.display()))?;
            Ok(Location {
                store: Arc::new(store),
                prefix: Path::default(),
                url: shown,
            })
        }
        "s3" => {
            let bucket = url
                .host_str()
                .filter(|b| !b.is_empty())
                .with_context(|| format!("`{shown}` names no bucket (s3://BUCKET/prefix)"))?;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry.config());
            // Local S3 servers (MinIO, SeaweedFS) want path-style requests over plain http.
            let endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .ok();
            if let Some(endpoint) = endpoint {
                // Without a scheme the S3 client panics on its first request.
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    bail!(
                        "AWS_ENDPOINT_URL `{endpoint}` has no scheme: write http://{endpoint} \
                         (a local S3 server without TLS) or https://{endpoint}"
                    );
                }
                builder = builder
                    .with_endpoint(&endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                builder = builder.with_region("us-east-1");
            }
            warn_without_credentials();
            let store = builder
                .build()
                .with_context(|| format!("cannot configure S3 store for `{shown}`"))?;
            Ok(Location {
                store: Arc::new(store),
                prefix: key_prefix()?,
                url: shown,
            })
        }
        "memory" => {
            let name = url.host_str().unwrap_or_default().to_string();
            let store = memory_stores()
                .lock()
                .map_err(|_| anyhow::anyhow!("memory store registry poisoned"))?
                .entry(name)
                .or_insert_with(|| Arc::new(InMemory::new()))
                .clone();
            Ok(Location {
                store,
                prefix: key_prefix()?,
                url: shown,
            })
        }
        other => bail!("`{shown}`: unsupported scheme `{other}` (use file://, s3:// or memory://)"),
    }
}

/// The bytes of one file named by a URL or a local path: a plain path or `file://` is
/// read from the local disk; `s3://bucket/key` and `memory://name/key` through the store
/// of the folder above it (S3 with the `retry` budget).
pub fn read_file(rt: &tokio::runtime::Handle, url_or_path: &str, retry: Retry) -> Result<Vec<u8>> {
    if !url_or_path.contains("://") || url_or_path.starts_with("file://") {
        let path = if url_or_path.contains("://") {
            url::Url::parse(url_or_path)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .with_context(|| format!("`{url_or_path}` is not a valid file:// URL"))?
        } else {
            std::path::PathBuf::from(url_or_path)
        };
        return std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()));
    }
    let (dir, name) = url_or_path
        .rsplit_once('/')
        .filter(|(dir, name)| {
            !name.is_empty()
                && dir
                    .split_once("://")
                    .is_some_and(|(_, bucket)| !bucket.is_empty())
        })
        .with_context(|| format!("`{url_or_path}` names no file (expected SCHEME://BUCKET/KEY)"))?;
    let location = open_with_retry(dir, retry)?;
    // The name is percent-encoded in the URL (as the folder is, which `open` decodes).
    let key = location.child(&percent_encoding::percent_decode_str(name).decode_utf8_lossy());
    let store = location.store.clone();
    let bytes = rt
        .block_on(async move {
            use object_store::ObjectStoreExt;
            store.get(&key).await?.bytes().await
        })
        .with_context(|| format!("cannot read {}", location.child_url(name)))?;
    Ok(bytes.to_vec())
}

impl Location {
    /// The key of a file under this location; `/` in `name` separates folders
    /// (`__adps/manifests/x.json`), each part escaped by object_store as usual.
    pub fn child(&self, name: &str) -> Path {
        name.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |key, part| key.join(part))
    }

    /// The names (relative to this location, `/`-separated) of every object under
    /// `dir`, a folder of this location; empty when the folder does not exist.
    pub fn list_names(&self, rt: &tokio::runtime::Handle, dir: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let key = self.child(dir);
        let store = self.store.clone();
        let metas = rt
            .block_on(async move { store.list(Some(&key)).try_collect::<Vec<_>>().await })
            .with_context(|| format!("cannot list {}", self.child_url(dir)))?;
        Ok(metas
            .into_iter()
            .map(|m| self.relative(&m.location))
            .collect())
    }

    /// The names of the objects directly under this location (not in its folders): one
    /// delimited listing, however many objects the folders hold.
    pub fn list_top(&self, rt: &tokio::runtime::Handle) -> Result<Vec<String>> {
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        let listing = rt
            .block_on(async move {
                let p = (!prefix.as_ref().is_empty()).then_some(&prefix);
                store.list_with_delimiter(p).await
            })
            .with_context(|| format!("cannot list {self}"))?;
        Ok(listing
            .objects
            .iter()
            .map(|m| self.relative(&m.location))
            .collect())
    }

    /// A key of this location as a name relative to its prefix.
    pub fn relative(&self, key: &Path) -> String {
        key.as_ref()
            .strip_prefix(self.prefix.as_ref())
            .unwrap_or(key.as_ref())
            .trim_start_matches('/')
            .to_string()
    }

    /// Every object under this location (recursively), in the store's order.
    pub fn list(&self, rt: &tokio::runtime::Handle) -> Result<Vec<object_store::ObjectMeta>> {
        use futures::TryStreamExt;
        let prefix = self.prefix.clone();
        let store = self.store.clone();
        rt.block_on(async move {
            let p = (!prefix.as_ref().is_empty()).then_some(&prefix);
            store.list(p).try_collect::<Vec<_>>().await
        })
        .with_context(|| format!("cannot list {self}"))
    }

    /// Whether `other` is this location or lies under it: local folders compared after
    /// resolving `..` and symlinks, object stores by scheme, bucket and key prefix (so
    /// `../data/out` or `s3://b//in/out` under `s3://b/in` are found too).
    pub fn contains(&self, other: &Location) -> bool {
        if let (Some(a), Some(b)) = (self.local_dir(), other.local_dir()) {
            let real = |p: std::path::PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
            return real(b).starts_with(real(a));
        }
        let store = |l: &Location| {
            url::Url::parse(&l.url).ok().map(|u| {
                (
                    u.scheme().to_string(),
                    u.host_str().unwrap_or_default().to_string(),
                )
            })
        };
        let (mine, theirs): (Vec<_>, Vec<_>) = (
            self.prefix.parts().collect(),
            other.prefix.parts().collect(),
        );
        store(self) == store(other) && theirs.starts_with(&mine)
    }

    /// The local folder of a `file://` location (None for object stores).
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        let url = url::Url::parse(&self.url).ok()?;
        (url.scheme() == "file").then(|| url.to_file_path().ok())?
    }

    /// Files that object_store's local backend left half-written under `dir` (a folder of
    /// this location, "" for its top): it writes `<name>#<n>` and renames it to `<name>`
    /// when complete, so a process killed mid-write leaves the `#<n>` file behind, which
    /// object_store's own listings hide but pyarrow, pandas and DuckDB read as data.
    /// Returns (`<name>` relative to this location, the leftover's path); empty for
    /// object stores, which never show a partial object.
    pub fn staged_leftovers(&self, dir: &str) -> Result<Vec<(String, std::path::PathBuf)>> {
        let Some(root) = self.local_dir() else {
            return Ok(Vec::new());
        };
        let folder = dir
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(root, |d, p| d.join(p));
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", folder.display())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", folder.display()))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            let Some((target, n)) = name.rsplit_once('#') else {
                continue;
            };
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                let rel = if dir.is_empty() {
                    target.to_string()
                } else {
                    format!("{}/{target}", dir.trim_matches('/'))
                };
                out.push((rel, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The bytes of the object `name` (relative to this location); the error names it.
    pub fn read(&self, rt: &tokio::runtime::Handle, name: &str) -> Result<bytes::Bytes> {
        let (store, key) = (self.store.clone(), self.child(name));
        rt.block_on(async move {
            use object_store::ObjectStoreExt;
            store.get(&key).await?.bytes().await
        })
        .with_context(|| format!("reading {}", self.child_url(name)))
    }

    /// The URL of a file directly under this location, for messages.
    pub fn child_url(&self, name: &str) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_contains_itself_and_its_subfolders_only() {
        let tmp = tempfile::tempdir().unwrap();
        let at = |p: &str| open_output(&tmp.path().join(p).to_string_lossy()).unwrap();
        let (data, out, data2) = (at("data"), at("data/out"), at("data2"));
        assert!(data.contains(&out) && data.contains(&data));
        assert!(!out.contains(&data) && !data.contains(&data2));
        // `..` and symlinks are resolved.
        let around = at("data2/../data/out2");
        assert!(data.contains(&around));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.path().join("data"), tmp.path().join("link")).unwrap();
            assert!(data.contains(&at("link/out3")));
        }
        let mem = |u: &str| open(u).unwrap();
        assert!(mem("memory://c/in").contains(&mem("memory://c/in/out/")));
        assert!(mem("memory://c/in").contains(&mem("memory://c//in/out")));
        assert!(!mem("memory://c/in").contains(&mem("memory://c/input")));
        assert!(!mem("memory://c/in").contains(&mem("memory://d/in/out")));
    }

    #[test]
    fn prefixes_are_decoded_and_urls_with_credentials_or_fragments_refused() {
        let loc = open("memory://keys/my%20data/donn%C3%A9es").unwrap();
        assert_eq!(loc.prefix.as_ref(), "my data/données");
        for bad in [
            "memory://keys/out#a",
            "memory://keys/out?x=1",
            "s3://AKIA:secret@bucket/prefix",
        ] {
            let e = format!("{:#}", open(bad).err().unwrap());
            assert!(!e.contains("secret"), "{e}");
            assert!(e.contains("%23") || e.contains("credentials"), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_never_shown() {
        let url = url::Url::parse("s3://AKIA:secret@bucket/prefix").unwrap();
        let shown = redact(&url);
        assert!(
            !shown.contains("secret") && !shown.contains("AKIA"),
            "{shown}"
        );
    }

    #[test]
    fn credentials_are_cut_from_any_text_that_quotes_a_url() {
        let text = "input s3://AKIA:s3cr@t@bucket/in: task.operator `matrix:s3://K:S@b/A.npy` \
                    (see https://example.com/x) file:///tmp/a";
        assert_eq!(
            redact_text(text),
            "input s3://bucket/in: task.operator `matrix:s3://b/A.npy` \
             (see https://example.com/x) file:///tmp/a"
        );
        assert_eq!(redact_text("s3://user@bucket"), "s3://bucket");
    }

    #[test]
    fn memory_urls_share_a_store() {
        let a = open("memory://store-test/a").unwrap();
        let b = open("memory://store-test/b").unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert_eq!(a.child("x.parquet").as_ref(), "a/x.parquet");
        assert_eq!(a.child("__adps/m/x.json").as_ref(), "a/__adps/m/x.json");
    }

    #[test]
    fn retries_end_on_time_not_on_count() {
        let zero = Retry::seconds(0).config();
        assert_eq!((zero.max_retries, zero.retry_timeout), (0, Duration::ZERO));
        for seconds in [1, 7, DEFAULT_RETRY_MAX_SECONDS, MAX_RETRY_MAX_SECONDS] {
            let c = Retry::seconds(seconds).config();
            assert_eq!(c.retry_timeout, Duration::from_secs(seconds));
            // Every sleep is at least init_backoff: the retries object_store allows would
            // sleep, at the least, longer than the budget, so the budget ends them.
            let least = c.backoff.init_backoff * c.max_retries as u32;
            assert!(least > c.retry_timeout, "{seconds}s: {least:?}");
            assert!(least <= c.retry_timeout + c.backoff.init_backoff);
            // Decorrelated jitter grows only for a base above e.
            assert!(c.backoff.base > std::f64::consts::E);
        }
    }

    #[test]
    fn read_file_from_a_path_a_file_url_and_a_memory_store() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a b.npy");
        std::fs::write(&path, b"abc").unwrap();
        let retry = Retry::seconds(0);
        let plain = path.to_str().unwrap();
        assert_eq!(read_file(rt.handle(), plain, retry).unwrap(), b"abc");
        let url = url::Url::from_file_path(&path).unwrap().to_string();
        assert_eq!(read_file(rt.handle(), &url, retry).unwrap(), b"abc");
        let missing = dir.path().join("missing.npy");
        let err = read_file(rt.handle(), missing.to_str().unwrap(), retry).unwrap_err();
        assert!(format!("{err:#}").contains("missing.npy"), "{err:#}");

        use object_store::ObjectStoreExt;
        let loc = open("memory://read-file-test/ops").unwrap();
        rt.block_on(loc.store.put(&loc.child("m.npy"), b"xyz".to_vec().into()))
            .unwrap();
        let got = read_file(rt.handle(), "memory://read-file-test/ops/m.npy", retry).unwrap();
        assert_eq!(got, b"xyz");
        let err =
            read_file(rt.handle(), "memory://read-file-test/ops/none.npy", retry).unwrap_err();
        assert!(format!("{err:#}").contains("none.npy"), "{err:#}");
        assert!(read_file(rt.handle(), "s3://bucket", retry).is_err());
    }

    #[test]
    fn unknown_scheme_is_named() {
        let err = open("gs://bucket/x").unwrap_err().to_string();
        assert!(err.contains("gs"), "{err}");
    }
}
