//! The one place that creates every channel and starts every stage.
//!
//! ```text
//! list ─▶ fetch ─▶ decode ─▶ batch ─▶ restore ×W ─▶ metrics ─▶ write ─▶ commit
//! ```
//! Every edge is a bounded crossbeam channel of shards (before `batch`) or batches
//! (after it): when a downstream stage is slow, the queues fill and upstream stages
//! block, so memory stays flat however large the dataset is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::bounded;

use super::plan::{Engines, Plan};
use crate::stages::{self, commit, Counters, MetricSums};

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub records_ok: u64,
    pub records_failed: u64,
    pub shards_committed: u64,
    pub shards_failed: u64,
    pub shards_skipped: u64,
    /// Failed records in the shards skipped as committed, and in the parts of resumed
    /// shards that an earlier run committed: final, but not restored.
    pub records_failed_before: u64,
    /// Shards that failed as a whole, with the reason.
    pub failed_shards: Vec<(String, String)>,
    /// The ids of the first few failed records.
    pub first_failed_ids: Vec<String>,
    /// Ids committed in more than one shard of the output (with these settings), with
    /// the shards that hold them.
    pub duplicate_ids: Vec<(String, Vec<String>)>,
    pub metrics: MetricSums,
    /// Denoiser evaluations per second over the run (NFE × images / wall seconds).
    pub nfe_per_second: f64,
    pub seconds: f64,
}

impl RunReport {
    /// Whether anything was left undone (a failed record or shard).
    pub fn is_partial(&self) -> bool {
        self.records_failed > 0 || self.shards_failed > 0 || self.records_failed_before > 0
    }
}

/// Runs a plan to the end. `progress` draws a progress bar on stderr.
pub fn run(plan: Plan, engines: Engines, progress: bool) -> Result<RunReport> {
    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    let rt = plan.runtime.handle().clone();
    let shards = plan.shards_to_run(&counters)?;
    let n_shards = shards.len() as u64;
    let cap = plan.spec.workers.queue_capacity.max(1);

    let (shard_tx, shard_rx) = bounded(shards.len().max(1));
    let (fetched_tx, fetched_rx) = bounded(cap);
    let (decoded_tx, decoded_rx) = bounded(cap);
    let (batch_tx, batch_rx) = bounded(cap);
    let (restored_tx, restored_rx) = bounded(cap);
    let (scored_tx, scored_rx) = bounded(cap);
    let (written_tx, written_rx) = bounded(cap);
    for s in shards {
        let _ = shard_tx.send(s);
    }
    drop(shard_tx);

    let done = AtomicBool::new(false);
    let Engines { restorers, lpips } = engines;
    let failed = std::thread::scope(|scope| {
        let (plan, counters, rt, done) = (&plan, &*counters, &rt, &done);
        scope.spawn(move || {
            stages::fetch::run(
                rt,
                plan.input.store.clone(),
                &plan.columns,
                plan.first_columns.as_ref(),
                shard_rx,
                fetched_tx,
                plan.spec.workers.fetch_concurrency,
                plan.spec.workers.chunk_rows,
            )
        });
        scope.spawn(move || stages::decode::run(&plan.decode, fetched_rx, decoded_tx, counters));
        scope.spawn(move || stages::batch::run(plan.spec.workers.batch_size, decoded_rx, batch_tx));
        for mut r in restorers {
            let (rx, tx) = (batch_rx.clone(), restored_tx.clone());
            scope.spawn(move || stages::restore::run(r.as_mut(), rx, tx, counters));
        }
        drop((batch_rx, restored_tx));
        scope.spawn(move || {
            stages::metrics::run(
                plan.shape,
                plan.spec.output.write_f32,
                lpips,
                restored_rx,
                scored_tx,
                counters,
            )
        });
        scope.spawn(move || {
            stages::write::run(
                rt,
                &plan.output,
                &plan.row_settings,
                plan.spec.output.part_rows,
                scored_rx,
                written_tx,
            )
        });
        if progress {
            scope.spawn(move || draw_progress(counters, n_shards, done));
        }
        let failed = commit::run(
            rt,
            &plan.output,
            &plan.settings_hash,
            &plan.settings_json,
            plan.shape,
            written_rx,
            counters,
        );
        done.store(true, Ordering::SeqCst);
        failed
    });

    let duplicate_ids = match commit::duplicate_ids(&rt, &plan.output, &plan.settings_hash) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("cannot check the output for duplicate ids: {e:#}");
            Vec::new()
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let metrics = counters
        .metric_sums
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    Ok(RunReport {
        records_ok: Counters::get(&counters.records_ok),
        records_failed: Counters::get(&counters.records_failed),
        shards_committed: Counters::get(&counters.shards_committed),
        shards_failed: Counters::get(&counters.shards_failed),
        shards_skipped: Counters::get(&counters.shards_skipped),
        records_failed_before: Counters::get(&counters.records_failed_before),
        failed_shards: failed
            .into_iter()
            .map(|(s, r)| (s.url.clone(), r))
            .collect(),
        first_failed_ids: counters
            .first_failed_ids
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
        duplicate_ids,
        metrics,
        nfe_per_second: Counters::get(&counters.nfe_images) as f64 / seconds.max(1e-9),
        seconds,
    })
}

/// Redraws a progress bar (images, shards, rate, ETA) until the run is done; without a
/// terminal (`--progress always` into a batch system's log file), a log line every
/// [`PROGRESS_LOG_EVERY`] instead of a bar redrawn into the file.
fn draw_progress(counters: &Counters, shards: u64, done: &AtomicBool) {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return log_progress(counters, shards, done);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} images  {msg}  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    while !done.load(Ordering::SeqCst) {
        let finished =
            Counters::get(&counters.records_ok) + Counters::get(&counters.records_failed);
        bar.set_length(Counters::get(&counters.records_expected).max(finished));
        bar.set_position(finished);
        bar.set_message(format!(
            "shards {}/{shards}",
            Counters::get(&counters.shards_committed) + Counters::get(&counters.shards_failed)
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
}

/// How often [`log_progress`] writes a line.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(10);

fn log_progress(counters: &Counters, shards: u64, done: &AtomicBool) {
    let start = std::time::Instant::now();
    let mut next = PROGRESS_LOG_EVERY;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        let elapsed = start.elapsed();
        if elapsed < next {
            continue;
        }
        next += PROGRESS_LOG_EVERY;
        let finished =
            Counters::get(&counters.records_ok) + Counters::get(&counters.records_failed);
        let expected = Counters::get(&counters.records_expected).max(finished);
        let per_s = finished as f64 / elapsed.as_secs_f64();
        let eta_s = (per_s > 0.0).then(|| ((expected - finished) as f64 / per_s).round());
        tracing::info!(
            images = finished,
            of = expected,
            shards_done =
                Counters::get(&counters.shards_committed) + Counters::get(&counters.shards_failed),
            shards,
            images_per_s = (per_s * 100.0).round() / 100.0,
            eta_s,
            "progress"
        );
    }
}
