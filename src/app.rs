//! The commands behind the CLI: parse flags, set up logging, build the plan, run it,
//! print the summary, and choose the exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command, LogFormat, Progress};
use crate::pipeline::config::RunSpec;
use crate::pipeline::{plan, topology};

/// Exit code for an error that stopped the run (bad spec, unreadable model, …).
pub const EXIT_ERROR: u8 = 1;
/// Exit code for a run that finished but left records or shards failed: a scheduler
/// should treat it as partial (the errors tables say what failed; a rerun retries it).
pub const EXIT_PARTIAL: u8 = 3;

/// An error and its causes on one line, each said once: object_store's errors already
/// include their source's text, so a cause whose text the previous one contains is not
/// repeated (otherwise an S3 error body appears four times). Credentials typed into a URL
/// are removed, and an S3 client that fell back to the instance metadata says why.
pub fn describe(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|prev| prev.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    let mut text = crate::io::store::redact_text(&parts.join(": "));
    if text.contains("169.254.169.254") {
        text.push_str(
            " (no AWS credentials were set, so the instance metadata service was asked for \
             a role: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; ~/.aws profiles are \
             not read)",
        );
    }
    text
}

/// The command line's exit code; a fatal error is printed on stderr as `error: …`, or as
/// one JSON event with `--log-format json` (a log system reads every line as JSON).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let format = cli.log_format;
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            let text = describe(&err);
            match format {
                LogFormat::Json => tracing::error!(error = %text, "adps stopped"),
                LogFormat::Text => eprintln!("error: {text}"),
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Runs the command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let progress = match cli.progress {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => cli.log_format == LogFormat::Text && std::io::stderr().is_terminal(),
    };
    match cli.command {
        Command::Status(args) => {
            let st = crate::status::status(&args.target, &args.set)?;
            if args.json {
                let mut v = serde_json::to_value(&st)?;
                v["complete"] = st.is_complete().into();
                if let Some(n) = args.worker_count {
                    v["resubmit_indices"] = serde_json::to_value(st.indices_to_resubmit(n))?;
                }
                println!("{v}");
            } else {
                print!("{}", st.render(args.worker_count));
            }
            Ok(if st.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_PARTIAL)
            })
        }
        Command::Report(args) => {
            let report = crate::run_report::collect(&args.target, &args.set, args.examples)?;
            let page = crate::report::run_page::render_run_report(&report)?;
            let written = crate::run_report::write(&report, &args.html, page)?;
            println!("report: {written}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { dir } => {
            print!("{}", crate::model::inspect(&dir)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => {
            let mut spec = args.to_spec();
            args.workers_share.apply(&mut spec)?;
            run_spec(spec, progress)
        }
        Command::Evaluate(args) => {
            let spec = crate::evaluate::config::SweepSpec::load(&args.spec, &args.set)?;
            let outcome = crate::evaluate::run(spec)?;
            println!(
                "{} settings; summary: {}; report: {}",
                outcome.settings.len(),
                outcome.summary.display(),
                outcome.report.display()
            );
            if outcome.partial_runs.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            for run in &outcome.partial_runs {
                tracing::error!("partial run: {run}");
            }
            println!(
                "{} run(s) left records or shards failed: {}",
                outcome.partial_runs.len(),
                outcome.partial_runs.join("; ")
            );
            Ok(ExitCode::from(EXIT_PARTIAL))
        }
        Command::Run(args) => {
            let mut spec = RunSpec::load(&args.spec, &args.set)?;
            args.workers.apply(&mut spec)?;
            run_spec(spec, progress)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ADPS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    // Colour only on a terminal: a batch system's log file gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_target(false).compact().try_init(),
    };
}

/// Builds and runs one pipeline, prints its summary, and returns the exit code.
pub fn run_spec(spec: RunSpec, progress: bool) -> Result<ExitCode> {
    let output_url = spec.output.url.clone();
    // A local output folder is created when the output is opened, before the input and
    // model are checked; a run refused after that must not leave an empty folder behind.
    let fresh_output = crate::io::store::local_dir(&output_url).filter(|d| !d.exists());
    let ran = plan::build(spec).and_then(|(plan, engines)| topology::run(plan, engines, progress));
    let report = match (ran, fresh_output) {
        (Ok(report), _) => report,
        (Err(e), dir) => {
            if let Some(dir) = dir {
                // remove_dir removes only an empty folder: nothing a run wrote is lost.
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(e);
        }
    };
    let m = &report.metrics;
    let mut summary = format!(
        "records ok {}, failed {}; shards committed {}, failed {}, skipped {}; {:.1}s, {:.1} NFE/s",
        report.records_ok,
        report.records_failed,
        report.shards_committed,
        report.shards_failed,
        report.shards_skipped,
        report.seconds,
        report.nfe_per_second
    );
    if m.scored > 0 {
        let n = m.scored as f64;
        summary.push_str(&format!(
            "; mean PSNR {:.2} dB, MSE {:.5} over {} images",
            m.psnr / n,
            m.mse / n,
            m.scored
        ));
        if m.ssim_scored > 0 {
            summary.push_str(&format!(", SSIM {:.4}", m.ssim / m.ssim_scored as f64));
        }
        if m.lpips_scored > 0 {
            summary.push_str(&format!(", LPIPS {:.4}", m.lpips / m.lpips_scored as f64));
        }
    }
    if report.records_failed_before > 0 {
        summary.push_str(&format!(
            "; {} record(s) failed earlier, in skipped shards or the committed parts of resumed \
             ones (final: their reasons are in __adps/errors/)",
            report.records_failed_before
        ));
    }
    if !report.first_failed_ids.is_empty() {
        let more = report.records_failed as usize
            - report
                .first_failed_ids
                .len()
                .min(report.records_failed as usize);
        summary.push_str(&format!(
            "; failed ids: {}{}",
            report.first_failed_ids.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if !report.duplicate_ids.is_empty() {
        let shown: Vec<String> = report
            .duplicate_ids
            .iter()
            .take(crate::stages::FAILED_IDS_SHOWN)
            .map(|(id, shards)| format!("{id} (in {})", shards.join(", ")))
            .collect();
        tracing::warn!(
            duplicates = report.duplicate_ids.len(),
            "ids committed in more than one shard: {}",
            shown.join("; ")
        );
        summary.push_str(&format!(
            "; {} id(s) committed in more than one shard: {}",
            report.duplicate_ids.len(),
            shown.join("; ")
        ));
    }
    for (shard, reason) in &report.failed_shards {
        tracing::error!("{shard}: {reason}");
    }
    let mean = |sum: f64, n: u64| (n > 0).then(|| sum / n as f64);
    tracing::info!(
        output = %output_url,
        records_ok = report.records_ok,
        records_failed = report.records_failed,
        shards_committed = report.shards_committed,
        shards_failed = report.shards_failed,
        shards_skipped = report.shards_skipped,
        records_failed_before = report.records_failed_before,
        duplicate_ids = report.duplicate_ids.len(),
        seconds = report.seconds,
        nfe_per_second = report.nfe_per_second,
        mean_psnr = mean(m.psnr, m.scored),
        mean_ssim = mean(m.ssim, m.ssim_scored),
        mean_lpips = mean(m.lpips, m.lpips_scored),
        first_failed_ids = %report.first_failed_ids.join(","),
        "run finished"
    );
    println!("{summary}");
    println!("outputs: {output_url}");
    Ok(if report.is_partial() {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_its_parent_is_said_once() {
        #[derive(Debug)]
        struct Inner;
        impl std::fmt::Display for Inner {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("403 Forbidden: <Error>bad key</Error>")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "list request failed: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = anyhow::Error::new(Outer(Inner)).context("cannot list s3://b/x");
        let text = describe(&err);
        assert_eq!(
            text,
            "cannot list s3://b/x: list request failed: 403 Forbidden: <Error>bad key</Error>"
        );
        assert_eq!(text.matches("403").count(), 1);
    }
}
