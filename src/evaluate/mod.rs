//! `adps evaluate`: runs a sweep of settings through the same pipeline as `adps run`
//! (each run resumable and committed per shard), picks ζ per setting on validation images
//! as the paper does, runs the test images once with it, and writes `summary.parquet` and
//! `report.html`.

pub mod baselines;
pub mod collect;
pub mod config;
pub mod examples;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use crate::model::ModelFolder;
use crate::pipeline::config::{
    InputSpec, MetricsSpec, ModelSpec, OutputSpec, RunSpec, SamplerSpec, TaskSpec, WorkerSpec,
};
use crate::pipeline::{plan, topology};
use crate::report::{SettingSummary, Stat, PAIRED_METRICS};
use crate::restore::operators::OperatorSpec;
use crate::restore::sampler::{Clip, Solver};
use config::SweepSpec;

/// One setting to evaluate.
#[derive(Debug, Clone)]
pub struct Setting {
    pub entry: String,
    pub model_dir: String,
    pub model: String,
    pub train_p: f64,
    pub operator: String,
    pub steps: usize,
    pub seed: u64,
    pub zeta_grid: Vec<f64>,
}

impl Setting {
    /// Folder of this setting's runs, relative to the sweep's `runs`: the sampler
    /// settings are in the name, so runs with other settings are never reused. Named
    /// after the model's card name, which [`check`] requires to be one folder's.
    fn slug(&self, solver: Solver, clip: Clip) -> String {
        let clip = match clip {
            Clip::None => String::new(),
            c => format!("-clip-{}", c.as_str()),
        };
        format!(
            "{}/{}/n{}-{solver}{clip}-s{}",
            self.model,
            self.operator.replace([':', '×'], "-"),
            self.steps,
            self.seed
        )
    }
}

/// What a finished sweep wrote.
#[derive(Debug)]
pub struct Outcome {
    pub summary: PathBuf,
    pub report: PathBuf,
    pub settings: Vec<SettingSummary>,
    /// Runs of the sweep (validation or test) in which records or shards failed.
    pub partial_runs: Vec<String>,
}

/// Checks a sweep before any compute; every problem names its entry.
pub fn check(spec: &SweepSpec) -> Result<Vec<Setting>> {
    let mut problems = Vec::new();
    let d = &spec.defaults;
    if d.seeds.is_empty() {
        problems.push("defaults.seeds is empty".into());
    }
    if spec.entries.is_empty() {
        problems.push("the sweep has no [[sweep]] entries".into());
    }
    for (name, set) in [
        ("validation", &spec.images.validation),
        ("test", &spec.images.test),
    ] {
        if set.limit == Some(0) {
            problems.push(format!("images.{name}: limit 0 is an empty image set"));
        }
    }
    if same_or_nested(&spec.images.validation.url, &spec.images.test.url) {
        problems.push(format!(
            "images.validation ({}) and images.test ({}) are the same set, or one holds the \
             other; ζ must be chosen on other images than those reported",
            spec.images.validation.url, spec.images.test.url
        ));
    }
    let mut settings = Vec::new();
    let mut folders: BTreeMap<String, Option<ModelFolder>> = BTreeMap::new();
    for e in &spec.entries {
        let grid = e.zeta_grid.clone().unwrap_or_else(|| d.zeta_grid.clone());
        if grid.is_empty() || grid.iter().any(|z| !(z.is_finite() && *z > 0.0)) {
            problems.push(format!(
                "sweep `{}`: the ζ grid must be non-empty, finite and positive, got {grid:?}",
                e.name
            ));
        }
        if e.models.is_empty() || e.operators.is_empty() || e.steps.is_empty() {
            problems.push(format!(
                "sweep `{}`: models, operators and steps must each list at least one value",
                e.name
            ));
        }
        if let Some(s) = e.steps.iter().find(|s| **s == 0) {
            problems.push(format!("sweep `{}`: steps {s} must be at least 1", e.name));
        }
        for m in &e.models {
            let folder = folders
                .entry(m.clone())
                .or_insert_with(|| match ModelFolder::open(m) {
                    Ok(f) => Some(f),
                    Err(err) => {
                        problems.push(format!("sweep `{}`: model {m}: {err:#}", e.name));
                        None
                    }
                })
                .clone();
            for op in &e.operators {
                let parsed = match OperatorSpec::from_str(op) {
                    Ok(p) => p,
                    Err(err) => {
                        problems.push(format!("sweep `{}`: {err}", e.name));
                        continue;
                    }
                };
                let Some(folder) = &folder else { continue };
                if let Err(err) = parsed.validate(folder.card().shape) {
                    problems.push(format!("sweep `{}`: model {m}: {err}", e.name));
                    continue;
                }
                for &steps in &e.steps {
                    for &seed in &d.seeds {
                        settings.push(Setting {
                            entry: e.name.clone(),
                            model_dir: m.clone(),
                            model: folder.card().name.clone(),
                            train_p: folder.card().train_p(),
                            operator: op.clone(),
                            steps,
                            seed,
                            zeta_grid: grid.clone(),
                        });
                    }
                }
            }
        }
    }
    // Run folders are named after the model's card name: two folders with one card name
    // would write into each other's runs.
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (dir, folder) in &folders {
        if let Some(f) = folder {
            by_name.entry(&f.card().name).or_default().push(dir);
        }
    }
    for (name, dirs) in by_name.into_iter().filter(|(_, d)| d.len() > 1) {
        problems.push(format!(
            "models {} have the same card name `{name}`; their runs would share folders under \
             `runs` and overwrite each other (give each its own name in card.json, or list \
             the folder once)",
            dirs.join(" and ")
        ));
    }
    problems.dedup();
    if !problems.is_empty() {
        bail!(
            "the sweep has {} problem(s):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        );
    }
    // The same setting listed by two entries runs once.
    let mut seen = std::collections::HashSet::new();
    settings.retain(|s| seen.insert((s.model_dir.clone(), s.operator.clone(), s.steps, s.seed)));
    Ok(settings)
}

/// Checks that an image set has shards (listing it), naming the set otherwise.
fn check_images(name: &str, url: &str) -> Result<()> {
    let rt = crate::io::store::io_runtime()?;
    let loc = crate::io::store::open(url).with_context(|| format!("images.{name} {url}"))?;
    let shards = crate::stages::list::list_shards(rt.handle(), &loc)
        .with_context(|| format!("images.{name}"))?;
    if shards.is_empty() {
        bail!("images.{name}: no .parquet shards under {url} (an empty image set)");
    }
    Ok(())
}

/// A committed pipeline run: its output location and the settings hash of its manifests.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub url: String,
    pub settings_hash: String,
}

/// A pipeline run of one setting at one ζ on one image set.
fn run_one(
    spec: &SweepSpec,
    s: &Setting,
    zeta: f64,
    images: &config::ImageSet,
    out: &str,
    partial: &mut Vec<String>,
) -> Result<RunDir> {
    let d = &spec.defaults;
    let run = RunSpec {
        input: InputSpec {
            limit: images.limit,
            ..InputSpec::at(images.url.clone())
        },
        output: OutputSpec {
            url: out.to_string(),
            write_f32: false,
            part_rows: crate::pipeline::config::default_part_rows(),
        },
        model: ModelSpec {
            dir: s.model_dir.clone(),
            device: d.device,
            threads: d.threads,
        },
        task: TaskSpec {
            operator: s.operator.clone(),
            sigma_y: d.sigma_y,
        },
        sampler: SamplerSpec {
            steps: s.steps,
            solver: d.solver,
            clip: d.clip,
            zeta,
            seed: s.seed,
            mask: d.mask,
            ..SamplerSpec::default()
        },
        workers: WorkerSpec {
            batch_size: d.batch_size,
            ..WorkerSpec::default()
        },
        metrics: MetricsSpec {
            lpips: d.lpips.clone(),
        },
        store: Default::default(),
    };
    let (plan, engines) = plan::build(run)?;
    let dir = RunDir {
        url: out.to_string(),
        settings_hash: plan.settings_hash.clone(),
    };
    let report = topology::run(plan, engines, false)?;
    if report.is_partial() {
        let what = format!(
            "{out}: {} records and {} shards failed",
            report.records_failed, report.shards_failed
        );
        tracing::warn!("{what}; the summary uses what succeeded");
        partial.push(what);
    }
    Ok(dir)
}

fn zeta_dir(z: f64) -> String {
    format!("zeta-{z}")
}

/// The rows a run committed (with its settings; not what other runs left there).
fn rows_of(run: &RunDir) -> Result<Vec<collect::PartRow>> {
    let rt = crate::io::store::io_runtime()?;
    let loc = crate::io::store::open(&run.url)?;
    collect::committed_rows(rt.handle(), &loc, &run.settings_hash)
        .with_context(|| format!("reading the rows of {}", run.url))
}

/// One ζ's validation run: per image id, its MSE (`None`: no value).
type ValRun = BTreeMap<String, Option<f64>>;

fn val_run(rows: &[collect::PartRow]) -> ValRun {
    rows.iter().map(|r| (r.id.clone(), r.mse)).collect()
}

/// The ζ curve: per validation run, its mean MSE over the images; +∞ (diverged) for a run
/// with a missing or non-finite MSE on any image, or that lacks an image another ζ's run
/// restored (a record that failed at this ζ), so that a ζ can only win on every image.
fn zeta_curve<'a>(runs: impl IntoIterator<Item = &'a ValRun>) -> Vec<f64> {
    let runs: Vec<&ValRun> = runs.into_iter().collect();
    let images: std::collections::BTreeSet<&String> = runs.iter().flat_map(|r| r.keys()).collect();
    runs.iter()
        .map(|r| {
            if images.is_empty() || r.len() < images.len() {
                return f64::INFINITY;
            }
            let mut sum = 0.0;
            for v in r.values() {
                match v {
                    Some(x) if x.is_finite() => sum += x,
                    _ => return f64::INFINITY,
                }
            }
            sum / r.len() as f64
        })
        .collect()
}

/// Picks ζ on the validation images: the grid's best by mean MSE ([`zeta_curve`]: a ζ that
/// diverged on any image is +∞); while the best lies on an edge, the grid is extended
/// past it by the edge's spacing (at most `widen` times).
fn search_zeta(
    spec: &SweepSpec,
    s: &Setting,
    base: &str,
    partial: &mut Vec<String>,
    val_ids: &mut std::collections::BTreeSet<String>,
) -> Result<(f64, Vec<f64>, Vec<f64>)> {
    let mut grid = s.zeta_grid.clone();
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    let mut runs: BTreeMap<u64, ValRun> = BTreeMap::new();
    let mut widened = 0;
    loop {
        for &z in &grid {
            if runs.contains_key(&z.to_bits()) {
                continue;
            }
            let out = format!("{base}/val/{}", zeta_dir(z));
            let dir = run_one(spec, s, z, &spec.images.validation, &out, partial)?;
            runs.insert(z.to_bits(), val_run(&rows_of(&dir)?));
        }
        if let Some(run) = runs.values().next() {
            val_ids.extend(run.keys().cloned());
        }
        // Recomputed over the whole grid each time: a new ζ's images may show an earlier
        // one lacking some.
        let mse = zeta_curve(grid.iter().map(|z| &runs[&z.to_bits()]));
        let best = (0..grid.len())
            .min_by(|&a, &b| mse[a].total_cmp(&mse[b]))
            .context("empty ζ grid")?;
        let at_low = best == 0 && grid.len() > 1;
        let at_high = best == grid.len() - 1 && grid.len() > 1;
        if !(at_low || at_high) || widened >= spec.defaults.widen {
            if at_low || at_high {
                tracing::warn!(
                    "{} {} N={}: best ζ {} is still at the grid's edge after {widened} extensions",
                    s.model,
                    s.operator,
                    s.steps,
                    grid[best]
                );
            }
            return Ok((grid[best], grid, mse));
        }
        widened += 1;
        if at_high {
            let n = grid.len();
            let ratio = if n > 1 {
                grid[n - 1] / grid[n - 2]
            } else {
                10.0
            };
            grid.push(grid[n - 1] * ratio);
        } else {
            let ratio = if grid.len() > 1 {
                grid[1] / grid[0]
            } else {
                10.0
            };
            grid.insert(0, grid[0] / ratio);
        }
    }
}

/// Whether two image sets are one folder (however spelled: a trailing `/`, a symlink) or
/// one lies inside the other.
fn same_or_nested(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (crate::io::store::open(a), crate::io::store::open(b)) {
        (Ok(a), Ok(b)) => a.contains(&b) || b.contains(&a),
        _ => false,
    }
}

/// Image ids that both sets hold, among ids the input names (a default
/// `<shard path>:<row>` id only says where a row is, so two different sets can share it).
fn shared_ids<'a>(
    validation: impl IntoIterator<Item = &'a String>,
    test: &'a [collect::PartRow],
) -> Vec<&'a str> {
    let named = |id: &str| {
        !id.rsplit_once(':').is_some_and(|(path, row)| {
            path.to_ascii_lowercase().ends_with(".parquet")
                && row.bytes().all(|b| b.is_ascii_digit())
        })
    };
    let val: std::collections::BTreeSet<&str> = validation
        .into_iter()
        .map(String::as_str)
        .filter(|id| named(id))
        .collect();
    test.iter()
        .map(|r| r.id.as_str())
        .filter(|id| val.contains(id))
        .collect()
}

/// Runs a whole sweep.
pub fn run(spec: SweepSpec) -> Result<Outcome> {
    let settings = check(&spec)?;
    check_images("validation", &spec.images.validation.url)?;
    check_images("test", &spec.images.test.url)?;
    let runs = spec.runs.trim_end_matches('/').to_string();
    let mut summaries = Vec::new();
    let mut test_dirs = Vec::new();
    let mut partial = Vec::new();
    // Per setting, per paired metric: image id → value, for the paired comparisons.
    let mut per_image: Vec<BTreeMap<&str, BTreeMap<String, f64>>> = Vec::new();
    for (k, s) in settings.iter().enumerate() {
        let base = format!(
            "{runs}/{}",
            s.slug(spec.defaults.solver, spec.defaults.clip)
        );
        let started = std::time::Instant::now();
        let mut val_ids = std::collections::BTreeSet::new();
        let (zeta, grid, curve) = search_zeta(&spec, s, &base, &mut partial, &mut val_ids)?;
        let test_dir = format!("{base}/test-{}", zeta_dir(zeta));
        let test_dir = run_one(&spec, s, zeta, &spec.images.test, &test_dir, &mut partial)?;
        let rows = rows_of(&test_dir)?;
        // Copies of the same images under two folders pass the folder check: their ids
        // do not (checked on the first setting, before the others are computed).
        if k == 0 {
            let shared = shared_ids(&val_ids, &rows);
            if !shared.is_empty() {
                bail!(
                    "images.validation and images.test share {} image id(s) (e.g. {}): ζ and \
                     the step count would be chosen on images the report scores. Use \
                     disjoint sets",
                    shared.len(),
                    shared
                        .iter()
                        .take(3)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        // Read from the committed parts, not timed here: a resumed or re-rendered sweep
        // skips finished runs and must still report what they cost.
        let seconds: f64 = rows.iter().filter_map(|r| r.seconds).sum();
        let mut metrics = BTreeMap::new();
        type Pick = fn(&collect::PartRow) -> Option<f64>;
        let picks: [(&str, Pick); 5] = [
            ("mse", |r| r.mse),
            ("psnr", |r| r.psnr),
            ("ssim", |r| r.ssim),
            ("lpips", |r| r.lpips),
            ("residual", |r| r.residual),
        ];
        let mut values = BTreeMap::new();
        for (name, pick) in picks {
            if let Some(st) = collect::stat(name, rows.iter().map(pick)) {
                metrics.insert(name.to_string(), st);
            }
            if let Some(&m) = PAIRED_METRICS.iter().find(|&&m| m == name) {
                let by_id = rows
                    .iter()
                    .filter_map(|r| pick(r).map(|v| (r.id.clone(), v)))
                    .collect();
                values.insert(m, by_id);
            }
        }
        per_image.push(values);
        let op = OperatorSpec::from_str(&s.operator)?;
        let (kind, level) = plan::kind_and_level(&op);
        let nfe = match spec.defaults.solver {
            Solver::Euler => s.steps,
            Solver::Heun => 2 * s.steps - 1,
        };
        let mse = metrics.get("mse").map_or(f64::NAN, |m: &Stat| m.mean);
        tracing::info!(
            "[{}/{}] {} {} N={} (NFE {nfe}) seed {}: ζ = {zeta} of {:?}; test MSE {mse:.5} over {} images ({:.0}s)",
            k + 1,
            settings.len(),
            s.model,
            s.operator,
            s.steps,
            s.seed,
            grid,
            rows.len(),
            started.elapsed().as_secs_f64()
        );
        summaries.push(SettingSummary {
            model: s.model.clone(),
            train_p: s.train_p,
            operator: s.operator.clone(),
            kind,
            level,
            steps: s.steps as u32,
            solver: spec.defaults.solver.to_string(),
            nfe: nfe as u32,
            seed: s.seed,
            zeta,
            zeta_grid: grid,
            zeta_val_mse: curve,
            metrics,
            seconds,
            paired_with: String::new(),
            paired: BTreeMap::new(),
            floor: BTreeMap::new(),
        });
        test_dirs.push(test_dir);
    }
    pair_with_clean(&mut summaries, &per_image);
    let floors = baselines::summarize(&spec, &settings, &test_dirs)?;
    pair_with_floor(&mut summaries, &per_image, &floors);
    // After every setting: `summaries[i]` stays `settings[i]` for the example grids.
    summaries.extend(floors.into_iter().map(|(row, _)| row));
    let mut outcome = write_outputs(&spec, &settings, &summaries, &test_dirs)?;
    outcome.partial_runs = partial;
    Ok(outcome)
}

/// Compares every Ambient setting with the clean model's setting at the same operator,
/// step count and seed, image by image (same test images, same per-image randomness).
/// The clean model is the one with train p = 0 (the first by name if there are several).
fn pair_with_clean(
    summaries: &mut [SettingSummary],
    per_image: &[BTreeMap<&str, BTreeMap<String, f64>>],
) {
    let reference: Vec<Option<usize>> = summaries
        .iter()
        .map(|s| {
            if s.train_p == 0.0 {
                return None;
            }
            (0..summaries.len())
                .filter(|&j| {
                    let c = &summaries[j];
                    c.train_p == 0.0
                        && c.operator == s.operator
                        && c.steps == s.steps
                        && c.seed == s.seed
                        && c.solver == s.solver
                })
                .min_by(|&a, &b| summaries[a].model.cmp(&summaries[b].model))
        })
        .collect();
    for (i, r) in reference.into_iter().enumerate() {
        let Some(j) = r else { continue };
        summaries[i].paired_with = summaries[j].model.clone();
        for m in PAIRED_METRICS {
            if let (Some(a), Some(b)) = (per_image[i].get(m), per_image[j].get(m)) {
                if let Some(d) = crate::report::stats::paired(a, b) {
                    summaries[i].paired.insert(m.to_string(), d);
                }
            }
        }
    }
}

/// Compares every setting with its operator's least-squares floor, image by image (the
/// same test images; the floor's measurements are drawn as the restorations' are), so
/// "restores more than A⁺y" is a paired statement like the comparison with the clean model.
/// The floor is computed with the seed of its operator's first setting (the operator
/// and the noise depend on it): settings with another seed are not paired with it.
fn pair_with_floor(
    summaries: &mut [SettingSummary],
    per_image: &[BTreeMap<&str, BTreeMap<String, f64>>],
    floors: &[(SettingSummary, baselines::PerImage)],
) {
    for (s, values) in summaries.iter_mut().zip(per_image) {
        let Some((_, floor)) = floors
            .iter()
            .find(|(f, _)| f.operator == s.operator && f.seed == s.seed)
        else {
            continue;
        };
        for m in crate::report::FLOOR_METRICS {
            if let (Some(a), Some(b)) = (values.get(m), floor.get(m)) {
                if let Some(d) = crate::report::stats::paired(a, b) {
                    s.floor.insert(m.to_string(), d);
                }
            }
        }
    }
}

fn write_outputs(
    spec: &SweepSpec,
    settings: &[Setting],
    summaries: &[SettingSummary],
    test_dirs: &[RunDir],
) -> Result<Outcome> {
    // What each headline cell shows, said once: adding a step count or an operator can
    // change the candidates, and with them a cell (README, "How the best step count is
    // chosen").
    for ((model, operator), i) in crate::report::best_per_model_operator(summaries) {
        let r = &summaries[i];
        if !crate::report::is_baseline(r) {
            tracing::info!(
                "headline {model} {operator}: N={} seed {} ζ={} (validation MSE {:.5})",
                r.steps,
                r.seed,
                r.zeta,
                crate::report::val_key(r)
            );
        }
    }
    let dir = Path::new(&spec.report);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let summary = dir.join("summary.parquet");
    let report = dir.join("report.html");
    let grids = examples::build(spec, settings, summaries, test_dirs)?;
    let intro = examples::intro(spec, summaries);
    write_atomically(
        &summary,
        &crate::report::summary::encode_summary(summaries)?,
    )?;
    let html = crate::report::html::render_report(&spec.title, &intro, summaries, &grids)?;
    write_atomically(&report, html.as_bytes())?;
    let markdown = crate::report::markdown::render_markdown(&spec.title, summaries);
    write_atomically(&dir.join("summary.md"), markdown.as_bytes())?;
    Ok(Outcome {
        summary,
        report,
        settings: summaries.to_vec(),
        partial_runs: Vec::new(),
    })
}

/// Writes a file through a temporary name, so a reader never sees half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(values: &[(&str, Option<f64>)]) -> ValRun {
        values.iter().map(|&(id, v)| (id.to_string(), v)).collect()
    }

    #[test]
    fn settings_are_paired_with_the_floor_of_their_operator_and_seed() {
        let setting = |seed: u64| SettingSummary {
            seed,
            ..crate::report::test_setting("m", 0.2, "cs:64", 10, &[("mse", 0.1)])
        };
        let mut rows = vec![setting(0), setting(1)];
        let mse = |a: f64, b: f64| {
            BTreeMap::from([(
                "mse",
                BTreeMap::from([("x".to_string(), a), ("y".to_string(), b)]),
            )])
        };
        let per_image = vec![mse(0.1, 0.3), mse(0.1, 0.3)];
        let floor = (
            SettingSummary {
                seed: 0,
                ..crate::report::test_setting("least squares", f64::NAN, "cs:64", 1, &[])
            },
            BTreeMap::from([(
                "mse",
                BTreeMap::from([("x".to_string(), 0.5), ("y".to_string(), 0.5)]),
            )]),
        );
        pair_with_floor(&mut rows, &per_image, &[floor]);
        let d = rows[0].floor.get("mse").expect("seed 0 paired");
        assert!((d.mean + 0.3).abs() < 1e-12 && d.count == 2, "{d:?}");
        // The floor was measured with seed 0's operator and noise: seed 1 has none.
        assert!(rows[1].floor.is_empty());
    }

    #[test]
    fn a_zeta_that_diverged_on_any_validation_image_is_infinite() {
        let good = images(&[("a", Some(0.02)), ("b", Some(0.04))]);
        // Diverged on one image, tiny on the other: never the best.
        let nan = images(&[("a", Some(f64::NAN)), ("b", Some(0.001))]);
        let inf = images(&[("a", Some(f64::INFINITY)), ("b", Some(0.001))]);
        let none = images(&[("a", None), ("b", Some(0.001))]);
        // Image `a` failed at this ζ (no row), the other ζ's restored it.
        let missing = images(&[("b", Some(0.001))]);
        let curve = zeta_curve([&good, &nan, &inf, &none, &missing]);
        assert!((curve[0] - 0.03).abs() < 1e-12, "{curve:?}");
        assert!(curve[1..].iter().all(|v| *v == f64::INFINITY), "{curve:?}");
        // An image no run restored is no reason to call every ζ diverged.
        let c = zeta_curve([&missing, &images(&[("b", Some(0.002))])]);
        assert_eq!(c, vec![0.001, 0.002]);
        assert_eq!(zeta_curve([&images(&[])]), vec![f64::INFINITY]);
    }
}
