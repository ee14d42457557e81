//! `adps status`: where a run stands, read from what it left under its output prefix
//! (manifests, failure records) and from its input listing: shards committed, pending
//! and failed (with reasons), records ok and failed, ids committed by two shards, and
//! for an array job which indices to resubmit. Nothing is written.
//!
//! Given a run spec, its settings hash says which manifests count; given only an output
//! prefix, the settings come from the manifests themselves (they record the input and
//! every setting), taking the settings most shards were committed with.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::io::layout;
use crate::io::store::{self, Location};
use crate::pipeline::config::{InputSpec, RunSpec};
use crate::stages::commit::{self, FailureRecord, Manifest};
use crate::stages::{list, Shard};

/// One input shard and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    /// Position in the sorted shard list: worker `index % count` owns it.
    pub index: usize,
    /// The shard's path relative to the input prefix.
    pub shard: String,
    /// `committed`, `failed` or `pending`.
    pub state: &'static str,
    /// Rows restored and rows failed, for a committed shard.
    pub rows: Option<usize>,
    pub errors: Option<usize>,
    /// Why it failed, for a failed shard; for a pending one committed with other
    /// settings, says so.
    pub reason: Option<String>,
    /// The files of its committed parts (data parts and errors tables, relative to the
    /// output prefix): its manifest's for a committed shard, its progress record's for
    /// an unfinished one; for `adps report`, which reads the rows the counts count.
    #[serde(skip)]
    pub files: Vec<String>,
    /// Rows restored and rows failed in those parts (of a committed or unfinished shard).
    #[serde(skip)]
    pub rows_done: (usize, usize),
    /// The shard's key in the input store as the listing gave it (`None` when the input
    /// could not be listed).
    #[serde(skip)]
    pub key: Option<object_store::path::Path>,
}

/// Where a run stands.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub output: String,
    pub input: Option<String>,
    pub settings_hash: Option<String>,
    pub shards: Vec<ShardStatus>,
    pub shards_committed: usize,
    pub shards_pending: usize,
    pub shards_failed: usize,
    pub records_ok: u64,
    pub records_failed: u64,
    /// Ids committed by more than one shard, with those shards.
    pub duplicate_ids: Vec<(String, Vec<String>)>,
    /// Failure records of shards that are no longer in the input listing.
    pub orphan_failures: Vec<String>,
    /// Why the input could not be listed, when [`status_without_input`] went on
    /// without it: the shards are then only those the output knows of (committed or
    /// unfinished), and the pending count leaves out shards not started.
    #[serde(skip)]
    pub input_unreachable: Option<String>,
}

impl RunStatus {
    /// Every shard committed and no record failed. Ids committed in more than one
    /// shard are reported but leave the run complete, as `adps restore` exits 0 with a
    /// warning for them: they come from the input (or a renamed shard), and no rerun
    /// changes them, so a job that polls `status` must not resubmit for them.
    pub fn is_complete(&self) -> bool {
        self.shards_pending == 0
            && self.shards_failed == 0
            && self.records_failed == 0
            && !self.shards.is_empty()
    }

    /// The worker indices (of `count`) that own an unfinished shard.
    pub fn indices_to_resubmit(&self, count: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = self
            .shards
            .iter()
            .filter(|s| s.state != "committed")
            .map(|s| s.index % count.max(1))
            .collect();
        idx.sort_unstable();
        idx.dedup();
        idx
    }

    /// A human-readable report.
    pub fn render(&self, worker_count: Option<usize>) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("output    {}", self.output));
        if let Some(i) = &self.input {
            line(format!("input     {i} ({} shards)", self.shards.len()));
        }
        if let Some(h) = &self.settings_hash {
            line(format!("settings  {}", &h[..h.len().min(16)]));
        }
        line(format!(
            "shards    committed {}, pending {}, failed {}",
            self.shards_committed, self.shards_pending, self.shards_failed
        ));
        line(format!(
            "records   ok {}, failed {}",
            self.records_ok, self.records_failed
        ));
        for s in self.shards.iter().filter(|s| s.state != "committed") {
            let why = s
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            line(format!(
                "{:<9} {} (index {}){why}",
                s.state, s.shard, s.index
            ));
        }
        for f in &self.orphan_failures {
            line(format!("failed    {f} (no longer in the input)"));
        }
        for (id, shards) in &self.duplicate_ids {
            line(format!("duplicate {id}: in {}", shards.join(", ")));
        }
        if let Some(n) = worker_count {
            let idx = self.indices_to_resubmit(n);
            if !idx.is_empty() {
                let list: Vec<String> = idx.iter().map(usize::to_string).collect();
                line(format!(
                    "resubmit  worker indices {} of {n} (e.g. sbatch --array={})",
                    list.join(","),
                    list.join(",")
                ));
            }
        }
        line(if self.is_complete() && !self.duplicate_ids.is_empty() {
            format!(
                "complete, but {} id(s) are in more than one shard (above): a rerun does not \
                 change that; de-duplicate the input or drop the extra shard's outputs",
                self.duplicate_ids.len()
            )
        } else if self.is_complete() {
            "complete".into()
        } else if self.input.is_none() && self.orphan_failures.is_empty() {
            // Nothing under the prefix names a run: no manifest, progress or failure.
            "not complete: no run has committed or started a shard here; `adps status \
             SPEC` (the run spec) lists the shards it would restore"
                .to_string()
        } else {
            "not complete".to_string()
        });
        out
    }
}

/// The status of a run given by a spec file (`*.toml`, with `--set` overrides) or by its
/// output prefix.
pub fn status(target: &str, sets: &[String]) -> Result<RunStatus> {
    status_with(target, sets, false)
}

/// [`status`] of an output prefix or spec, going on from the output alone when the input
/// cannot be listed (moved, deleted, out of reach): for `adps report`, which reads the
/// manifests and says what it left out ([`RunStatus::input_unreachable`]).
pub fn status_without_input(target: &str, sets: &[String]) -> Result<RunStatus> {
    status_with(target, sets, true)
}

fn status_with(target: &str, sets: &[String], input_optional: bool) -> Result<RunStatus> {
    let rt = crate::io::store::io_runtime()?;
    let rt = rt.handle();
    let is_spec = target.ends_with(".toml");
    if is_spec && !std::path::Path::new(target).is_file() {
        bail!("cannot read the run spec {target}: no such file");
    }
    let mut retry = store::Retry::default();
    // The spec's settings, to say what differs from a shard committed with others.
    let mut spec_settings = None;
    let (output_url, wanted) = if is_spec {
        let spec = RunSpec::load(std::path::Path::new(target), sets)?;
        let folder = crate::model::ModelFolder::open(&spec.model.dir)
            .with_context(|| format!("model {}", spec.model.dir))?;
        // The operator's files enter the hash as the plan reads them.
        let op = crate::restore::operators::OperatorSpec::parse(&spec.task.operator)
            .map_err(|e| anyhow::anyhow!("task.{e}"))?;
        let files = crate::io::operator_file::hashes(rt, &op.files(), spec.store.retry())?;
        let json = crate::pipeline::plan::settings_json(&spec, folder.card(), &files);
        let hash = crate::pipeline::plan::settings_hash(&json);
        spec_settings = Some(json);
        retry = spec.store.retry();
        (spec.output.url.clone(), Some((spec.input.clone(), hash)))
    } else {
        // Of a run's settings only the store's apply to an output prefix (how long a
        // request to a store that does not answer is retried).
        let mut table = toml::Table::new();
        for o in sets {
            if !o.starts_with("store.") {
                bail!(
                    "--set {o}: only store.* settings apply to an output prefix; the others \
                     belong to a run spec (adps status SPEC --set …)"
                );
            }
            crate::pipeline::config::apply_override(&mut table, o)?;
        }
        if let Some(store) = table.remove("store") {
            let store: crate::pipeline::config::StoreSpec =
                store.try_into().context("--set store.…")?;
            retry = store.retry();
        }
        (target.to_string(), None)
    };
    let (output, shown_output) = match store::open_with_retry(&output_url, retry) {
        Ok(o) => {
            let shown = o.url.clone();
            (o, shown)
        }
        // A run not started yet has no local output folder: everything is pending, as
        // an S3 prefix with no objects would say (an empty store stands in for it).
        Err(_)
            if is_spec
                && !output_url.contains("://")
                && !std::path::Path::new(&output_url).exists() =>
        {
            let empty = store::open(&format!(
                "memory://adps-status-empty/{}",
                std::process::id()
            ))?;
            (empty, output_url.clone())
        }
        Err(e) => return Err(e).with_context(|| format!("output {output_url}")),
    };
    let manifests = commit::read_manifests(rt, &output)?;
    let failures = read_failures(rt, &output)?;
    let (input, hash) = match wanted {
        Some((input, hash)) => (Some(input), Some(hash)),
        None => match settings_from_manifests(&manifests)
            .or_else(|| settings_from_progress(rt, &output))
            .or_else(|| settings_from_failures(&failures))
        {
            Some((input, hash)) => (Some(input), Some(hash)),
            None => (None, None),
        },
    };
    let by_stem: BTreeMap<String, &Manifest> = manifests
        .iter()
        .filter_map(|(name, m)| {
            let stem = name
                .strip_prefix(&format!("{}/", layout::manifests_dir()))?
                .strip_suffix(".json")?;
            Some((stem.to_string(), m))
        })
        .collect();
    let mut st = RunStatus {
        output: shown_output,
        input: input.as_ref().map(|i| i.url.clone()),
        settings_hash: hash.clone(),
        shards: Vec::new(),
        shards_committed: 0,
        shards_pending: 0,
        shards_failed: 0,
        records_ok: 0,
        records_failed: 0,
        duplicate_ids: Vec::new(),
        orphan_failures: Vec::new(),
        input_unreachable: None,
    };
    let Some(input) = input else {
        // Nothing committed yet: only the failure records can be reported.
        for f in failures.values() {
            st.orphan_failures
                .push(format!("{}: {}", f.shard, f.reason));
            st.shards_failed += 1;
        }
        return Ok(st);
    };
    let hash = hash.unwrap_or_default();
    let shards = match input_shards(rt, &input, retry) {
        Ok(shards) => shards,
        Err(e) if input_optional => {
            st.input_unreachable = Some(format!("{e:#}"));
            known_shards(rt, &output, &by_stem, &failures, &hash)?
        }
        Err(e) => return Err(e),
    };
    let mut listed = std::collections::BTreeSet::new();
    for shard in &shards {
        // A shard a rerun would go on with: where it stands, as the run finds it.
        let resumed = |s: &mut ShardStatus, st: &mut RunStatus| -> Result<()> {
            if let Some(r) = commit::resume_point(rt, &output, shard, &hash)? {
                s.reason = Some(format!(
                    "rows 0–{} committed in {} part(s); a rerun goes on from there",
                    r.rows_done.saturating_sub(1),
                    r.parts
                ));
                st.records_ok += r.rows_ok as u64;
                st.records_failed += r.rows_failed as u64;
                s.rows_done = (r.rows_ok, r.rows_failed);
                s.files = r.files.into_iter().map(|(name, _)| name).collect();
            }
            Ok(())
        };
        let stem = shard.stem();
        listed.insert(stem.clone());
        let manifest = by_stem.get(&stem);
        let mut s = ShardStatus {
            index: shard.index,
            shard: shard.path.clone(),
            state: "pending",
            rows: None,
            errors: None,
            reason: None,
            files: Vec::new(),
            rows_done: (0, 0),
            key: (st.input_unreachable.is_none()).then(|| shard.key.clone()),
        };
        // What a rerun would do with the shard's manifest, checked as the run checks it
        // (files present with their sizes, input file unchanged).
        let check = match manifest {
            Some(m) => Some(commit::check_manifest(rt, &output, shard, m, &hash)?),
            None => None,
        };
        match (manifest, failures.get(&stem)) {
            (Some(m), _) if matches!(check, Some(commit::ManifestCheck::Holds { .. })) => {
                s.state = "committed";
                s.rows = Some(m.rows);
                s.errors = Some(m.errors);
                s.files = m.files.iter().map(|f| f.name.clone()).collect();
                s.rows_done = (m.rows, m.errors);
                st.records_ok += m.rows as u64;
                st.records_failed += m.errors as u64;
            }
            (_, Some(f)) if f.settings_hash == hash => {
                s.state = "failed";
                s.reason = Some(f.reason.clone());
            }
            (Some(_), _) if matches!(check, Some(commit::ManifestCheck::FilesChanged)) => {
                s.reason = Some(
                    "committed, but a file its manifest names is missing or has another size; \
                     a rerun restores it again"
                        .into(),
                );
                resumed(&mut s, &mut st)?;
            }
            (Some(_), _) if matches!(check, Some(commit::ManifestCheck::InputChanged { .. })) => {
                if let Some(commit::ManifestCheck::InputChanged { was, now }) = &check {
                    s.reason = Some(format!(
                        "committed from another version of the input file ({was}; now {now}); \
                         a rerun restores it again"
                    ))
                }
                resumed(&mut s, &mut st)?;
            }
            (Some(m), _) if m.settings_hash == hash => {
                s.reason = Some("committed for another input.limit window".into())
            }
            (Some(m), _) => {
                s.reason = Some(match &spec_settings {
                    Some(json) => format!(
                        "committed with other settings ({})",
                        crate::pipeline::plan::settings_changes(&m.settings, json).join("; ")
                    ),
                    None => "committed with other settings".into(),
                })
            }
            _ => resumed(&mut s, &mut st)?,
        }
        match s.state {
            "committed" => st.shards_committed += 1,
            "failed" => st.shards_failed += 1,
            _ => st.shards_pending += 1,
        }
        st.shards.push(s);
    }
    for (stem, f) in &failures {
        if !listed.contains(stem) && f.settings_hash == hash {
            st.orphan_failures
                .push(format!("{}: {}", f.shard, f.reason));
        }
    }
    st.duplicate_ids = commit::duplicate_ids(rt, &output, &hash)?;
    Ok(st)
}

/// The input's shards as a run with these input settings takes them.
fn input_shards(
    rt: &tokio::runtime::Handle,
    input: &InputSpec,
    retry: store::Retry,
) -> Result<Vec<Shard>> {
    let loc: Location = store::open_with_retry(&input.url, retry)
        .with_context(|| format!("input {}", input.url))?;
    let all = list::list_shards(rt, &loc)?;
    Ok(match input.limit {
        Some(limit) => list::apply_limit(rt, &loc, all, limit)?,
        None => all,
    })
}

/// The shards the output knows of with settings `hash`, for a run whose input cannot be
/// listed: those with a manifest, a failure record or a progress record, in path order (the
/// input's listing order, as far as it can be told without it). Their keys are not
/// known; a shard's `take` is its record's.
fn known_shards(
    rt: &tokio::runtime::Handle,
    output: &Location,
    by_stem: &BTreeMap<String, &Manifest>,
    failures: &BTreeMap<String, FailureRecord>,
    hash: &str,
) -> Result<Vec<Shard>> {
    let mut found: BTreeMap<String, (String, Option<usize>)> = BTreeMap::new();
    for m in by_stem.values().filter(|m| m.settings_hash == hash) {
        found.insert(m.shard.clone(), (m.input.clone(), m.take));
    }
    for f in failures.values().filter(|f| f.settings_hash == hash) {
        found
            .entry(f.shard.clone())
            .or_insert((f.input.clone(), None));
    }
    let dir = format!("{}/progress", layout::META_DIR);
    for name in output.list_names(rt, &dir)? {
        let bytes = output.read(rt, &name)?;
        // A foreign or damaged record is skipped, as a resuming run skips it.
        let Ok(r) = serde_json::from_slice::<commit::ProgressRecord>(&bytes) else {
            continue;
        };
        if r.settings_hash == hash {
            found
                .entry(r.shard.clone())
                .or_insert((String::new(), r.take));
        }
    }
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(index, (path, (url, take)))| {
            let mut shard = Shard::new(index, path, url, object_store::path::Path::default());
            shard.take = take;
            shard
        })
        .collect())
}

/// The input and settings hash most committed shards share.
fn settings_from_manifests(manifests: &[(String, Manifest)]) -> Option<(InputSpec, String)> {
    let mut votes: BTreeMap<&str, (usize, &Manifest)> = BTreeMap::new();
    for (_, m) in manifests {
        votes.entry(&m.settings_hash).or_insert((0, m)).0 += 1;
    }
    let (hash, (_, m)) = votes.into_iter().max_by_key(|(_, (n, _))| *n)?;
    let mut input: InputSpec = serde_json::from_value(m.settings.get("input")?.clone()).ok()?;
    // The settings hold the input as the run spelled it (a relative path means nothing
    // from another directory); the manifest's shard URL is absolute: its prefix is the
    // input the run listed.
    if let Some(prefix) = m.input.strip_suffix(&format!("/{}", m.shard)) {
        input.url = prefix.to_string();
    }
    Some((input, hash.to_string()))
}

/// The input and settings hash of the first progress record (a run killed before its
/// first shard committed leaves only those).
fn settings_from_progress(
    rt: &tokio::runtime::Handle,
    output: &Location,
) -> Option<(InputSpec, String)> {
    let dir = format!("{}/progress", layout::META_DIR);
    for name in output.list_names(rt, &dir).ok()? {
        let store = output.store.clone();
        let key = output.child(&name);
        let record: Option<commit::ProgressRecord> = rt.block_on(async move {
            use object_store::ObjectStoreExt;
            let bytes = store.get(&key).await.ok()?.bytes().await.ok()?;
            serde_json::from_slice(&bytes).ok()
        });
        if let Some(r) = record {
            let mut input: InputSpec =
                serde_json::from_value(r.settings.get("input")?.clone()).ok()?;
            // As for manifests: the record's shard URL is absolute, the settings' input
            // as the run spelled it (records before the URL was kept have none).
            if let Some(prefix) = r.input.strip_suffix(&format!("/{}", r.shard)) {
                input.url = prefix.to_string();
            }
            return Some((input, r.settings_hash));
        }
    }
    None
}

/// The input and settings hash of the first failure record, for an output that holds
/// nothing else (every shard a run reached failed as a whole). Records written before
/// they kept the settings give the input's URL only.
fn settings_from_failures(
    failures: &BTreeMap<String, FailureRecord>,
) -> Option<(InputSpec, String)> {
    let f = failures.values().next()?;
    let prefix = f.input.strip_suffix(&format!("/{}", f.shard))?;
    let mut input: InputSpec = f
        .settings
        .get("input")
        .and_then(|i| serde_json::from_value(i.clone()).ok())
        .or_else(|| serde_json::from_value(serde_json::json!({ "url": prefix })).ok())?;
    input.url = prefix.to_string();
    Some((input, f.settings_hash.clone()))
}

/// The failure records under an output prefix, by shard stem.
fn read_failures(
    rt: &tokio::runtime::Handle,
    output: &Location,
) -> Result<BTreeMap<String, FailureRecord>> {
    let dir = format!("{}/failed", layout::META_DIR);
    let mut out = BTreeMap::new();
    for name in output.list_names(rt, &dir)? {
        let Some(stem) = name
            .strip_prefix(&format!("{dir}/"))
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let bytes = output.read(rt, &name)?;
        let record: FailureRecord = serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not an adps failure record", output.child_url(&name))
        })?;
        out.insert(stem.to_string(), record);
    }
    Ok(out)
}
