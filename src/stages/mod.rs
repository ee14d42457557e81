//! The pipeline's stages, one file each, in flow order:
//! list → fetch → decode → batch → restore → metrics → write → commit.
//!
//! A stage is a function that takes a receiver and a sender (or only one of them) and
//! runs until its input closes; it never names its neighbours. `crate::pipeline::topology`
//! is the one place that creates the channels and starts the stages.

pub mod batch;
pub mod commit;
pub mod decode;
pub mod fetch;
pub mod list;
pub mod metrics;
pub mod restore;
pub mod write;

use std::sync::Arc;

use crate::io::parquet_out::{ErrorRow, OutputRow};

/// One input shard.
#[derive(Debug, Clone)]
pub struct Shard {
    /// Position in the full, sorted shard list (before worker selection).
    pub index: usize,
    /// The shard's identity: its path relative to the input prefix, e.g.
    /// `train/shard-00042.parquet`. Names its outputs (escaped, see `io::layout`),
    /// default ids and error rows.
    pub path: String,
    /// The shard's URL, for messages.
    pub url: String,
    /// Key in the input store.
    pub key: object_store::path::Path,
    /// Restore only the shard's first `take` records (`input.limit` reaching into it);
    /// `None`: all of them.
    pub take: Option<usize>,
    /// Parts of this shard an earlier run committed with these settings: the run goes on
    /// from the row after them.
    pub resume: Option<Resume>,
    /// The input file as listed (size and the store's version tag): recorded with its
    /// outputs, so a rerun notices a shard replaced since. `None` where not listed.
    pub version: Option<InputVersion>,
}

/// What identifies one version of an input file: its size and a tag — an object store's
/// ETag, a local file's modification time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputVersion {
    pub size: u64,
    pub tag: Option<String>,
}

impl InputVersion {
    /// The version of a listed file. On a local disk object_store's ETag includes the
    /// inode, which a copy that keeps the content and time (`cp -p`, `rsync -a`, a
    /// re-staged input) changes, and which some mounts make up per process: there the
    /// modification time alone is the tag. An object store's ETag changes with the
    /// content.
    pub fn of(meta: &object_store::ObjectMeta, local: bool) -> Self {
        let modified = || meta.last_modified.to_rfc3339();
        InputVersion {
            size: meta.size,
            tag: Some(match (&meta.e_tag, local) {
                (Some(tag), false) => tag.clone(),
                _ => modified(),
            }),
        }
    }
}

impl std::fmt::Display for InputVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.size)?;
        if let Some(tag) = &self.tag {
            write!(f, ", tag {tag}")?;
        }
        Ok(())
    }
}

/// Where an interrupted shard stands: its first `parts` parts are committed.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Resume {
    /// Rows of the shard (from its first) that the committed parts account for.
    pub rows_done: usize,
    /// Parts committed.
    pub parts: usize,
    /// Their files (data parts and errors tables) with sizes.
    pub files: Vec<(String, u64)>,
    /// Rows restored and rows failed in them.
    pub rows_ok: usize,
    pub rows_failed: usize,
}

/// A 96-bit digest of a record id: duplicate checks keep these, not the ids, so that
/// their memory per row stays small. An entry of a duplicate map is this digest and a
/// `u32` (16 bytes, 4-aligned; a `u128` key made it 32 bytes, since `u128` is 16-aligned),
/// so a shard of 100,000 rows costs about 2 MiB. Two distinct ids share a digest with
/// probability about n²/2⁹⁷ (6·10⁻¹⁴ for 10⁸ ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdDigest([u8; 12]);

/// The digest of a record id (the first 96 bits of its SHA-256).
pub fn id_digest(id: &str) -> IdDigest {
    use sha2::Digest;
    let d = sha2::Sha256::digest(id.as_bytes());
    let mut b = [0u8; 12];
    b.copy_from_slice(&d[..12]);
    IdDigest(b)
}

impl Shard {
    /// A shard to restore in full.
    pub fn new(index: usize, path: String, url: String, key: object_store::path::Path) -> Self {
        Shard {
            index,
            path,
            url,
            key,
            take: None,
            resume: None,
            version: None,
        }
    }

    /// Whether `recorded` (from an earlier run's manifest or progress record) is this
    /// shard's listed version; true where either is unknown (records written before
    /// versions were, or a shard not listed).
    pub fn same_version(&self, recorded: Option<&InputVersion>) -> bool {
        match (recorded, &self.version) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// The escaped, flat name of this shard's outputs (see `io::layout`).
    pub fn stem(&self) -> String {
        crate::io::layout::shard_stem(&self.path)
    }
}

/// A decoded input record.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The record id (seeds its randomness).
    pub id: String,
    /// Row in its shard (restores the shard's order in the output).
    pub row: usize,
    /// Ground truth CHW in [-1, 1], for clean-image input (y is then simulated).
    pub truth: Option<Vec<f32>>,
    /// The measurement y, for measured input.
    pub y: Option<Vec<f32>>,
    /// A per-record inpainting mask (1 = kept), one value per pixel (H·W, shared by
    /// every channel), where the input has one.
    pub mask: Option<Vec<f32>>,
    /// Where the input image lies in the model's canvas when it was padded to fit
    /// (`input.fit = "pad"`): the reconstruction is cropped back to it.
    pub frame: Option<Frame>,
    /// The record's values of the kept input columns, copied into its output row.
    pub keep: Vec<arrow::array::ArrayRef>,
}

/// A window of an image: rows `top..top + height`, columns `left..left + width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// What flows between stages after `decode`: shard bookkeeping or a payload.
#[derive(Debug)]
pub enum Flow<T> {
    /// A chunk of a shard was read: `errors` failed while decoding; its records follow
    /// as payload. The shard's last chunk says how many rows the whole shard sent
    /// (`records`: records and failed rows), so the shard is complete once that many are
    /// accounted for, whatever the order in which chunks and payload reach a later stage.
    Opened {
        shard: Arc<Shard>,
        records: Option<usize>,
        errors: Vec<ErrorRow>,
    },
    /// A shard failed as a whole (unreadable, corrupt): nothing of it is written.
    Failed { shard: Arc<Shard>, reason: String },
    /// Payload.
    Data(T),
}

impl<T> Flow<T> {
    /// Transforms the payload; bookkeeping passes through unchanged.
    pub fn map_data<U>(self, f: impl FnOnce(T) -> U) -> Flow<U> {
        match self {
            Flow::Data(t) => Flow::Data(f(t)),
            Flow::Opened {
                shard,
                records,
                errors,
            } => Flow::Opened {
                shard,
                records,
                errors,
            },
            Flow::Failed { shard, reason } => Flow::Failed { shard, reason },
        }
    }
}

/// A batch of records for one model call; may span shards.
pub type Batch = Vec<(Arc<Shard>, Record)>;

/// A restored image, or why it could not be restored.
#[derive(Debug)]
pub struct Restored {
    pub shard: Arc<Shard>,
    pub record: Record,
    /// Reconstruction CHW in [-1, 1], its measurement residual ‖y − A x̂‖, and the
    /// wall seconds its batch took divided by the batch size.
    pub result: Result<(Vec<f32>, f64, f64), String>,
}

/// A finished row, or the error it ended with.
#[derive(Debug)]
pub struct Scored {
    pub shard: Arc<Shard>,
    pub row: usize,
    pub result: Result<OutputRow, ErrorRow>,
}

/// A shard whose data files are written and which may now be committed.
#[derive(Debug)]
pub struct Written {
    pub shard: Arc<Shard>,
    pub rows: usize,
    pub errors: usize,
    /// Keys written, with their sizes, for the manifest.
    pub files: Vec<(String, u64)>,
    /// Restore time of the shard's images (each image's share of its batch's time).
    pub restore_seconds: f64,
    /// Mean PSNR over the rows with ground truth, if any.
    pub mean_psnr: Option<f64>,
}

/// Counters every stage adds to; read by the progress display and the final summary,
/// and asserted in tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub records_ok: std::sync::atomic::AtomicU64,
    pub records_failed: std::sync::atomic::AtomicU64,
    pub records_skipped: std::sync::atomic::AtomicU64,
    /// Failed records of shards skipped as committed (their errors tables are final).
    pub records_failed_before: std::sync::atomic::AtomicU64,
    pub shards_committed: std::sync::atomic::AtomicU64,
    pub shards_failed: std::sync::atomic::AtomicU64,
    pub shards_skipped: std::sync::atomic::AtomicU64,
    /// Denoiser evaluations (NFE × images), for NFE/s.
    pub nfe_images: std::sync::atomic::AtomicU64,
    /// Records known so far (grows as shards are decoded), for the progress bar.
    pub records_expected: std::sync::atomic::AtomicU64,
    /// Sums of the metrics of scored records, for the run summary.
    pub metric_sums: std::sync::Mutex<MetricSums>,
    /// The ids of the first few failed records, for the final log line.
    pub first_failed_ids: std::sync::Mutex<Vec<String>>,
}

/// How many failed record ids the final summary names.
pub const FAILED_IDS_SHOWN: usize = 5;

/// Running sums of per-image metrics (only records with ground truth count).
#[derive(Debug, Default, Clone)]
pub struct MetricSums {
    pub scored: u64,
    pub mse: f64,
    pub psnr: f64,
    /// SSIM is undefined for images smaller than its 11×11 window, so it counts apart.
    pub ssim_scored: u64,
    pub ssim: f64,
    pub lpips_scored: u64,
    pub lpips: f64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &std::sync::atomic::AtomicU64, n: u64) {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts failed records and keeps the first few ids for the summary.
    pub fn add_failed<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut n = 0;
        let mut shown = self.first_failed_ids.lock().ok();
        for id in ids {
            n += 1;
            if let Some(v) = shown.as_mut().filter(|v| v.len() < FAILED_IDS_SHOWN) {
                v.push(id.to_string());
            }
        }
        Counters::add(&self.records_failed, n);
    }

    /// Reads a counter.
    pub fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    }
}
