//! The output layout: every name adps writes under an output prefix, in one place.
//!
//! ```text
//! OUT/part-<stem>.parquet              restored rows (the only files at the top)
//! OUT/part-<stem>=P00001.parquet       the shard's next parts, when it has more rows
//!                                      than `output.part_rows`
//! OUT/__adps/manifests/<stem>.json     written last: the shard is committed
//! OUT/__adps/errors/<stem>.parquet     records of the shard that failed (per part)
//! OUT/__adps/progress/<stem>.json      parts committed so far of an unfinished shard
//! OUT/__adps/failed/<stem>.json        the shard failed as a whole (removed on commit)
//! ```
//! `=P` never occurs in a stem (`=` is always followed by two hex digits there), so
//! part names of different shards never meet.
//! Readers skip the metadata folder by convention: pyarrow, pandas, Spark and DuckDB
//! ignore names starting with `_`, Hugging Face `datasets` ignores folders starting with
//! `__`, so `pd.read_parquet(OUT)` and `load_dataset(OUT)` see the data parts alone.
//!
//! A shard's identity is its path relative to the input prefix (`train/0.parquet`), so
//! shards with the same file name in two folders never meet. `<stem>` is that path
//! without `.parquet`, escaped so that it is one flat file name that no store rewrites:
//! bytes outside `[A-Za-z0-9._-]` become `=XX` (upper-case hex), `/` included
//! (`train/0.parquet` → `train=2F0`, `ü.parquet` → `=C3=BC`). Hand-written because the
//! usual percent-encoding is not stable here: object_store escapes `%` itself and the
//! local store decodes it again on disk, turning `%2F` back into a folder.

/// The folder under an output prefix that holds everything but the data parts.
pub const META_DIR: &str = "__adps";

/// The escaped, flat name of a shard, from its path relative to the input prefix.
pub fn shard_stem(rel_path: &str) -> String {
    let rel = rel_path.strip_suffix(".parquet").unwrap_or(rel_path);
    let mut out = String::with_capacity(rel.len());
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The data part `k` of a shard (0 for its first, and usually only, part).
pub fn part_name(stem: &str, k: usize) -> String {
    match k {
        0 => format!("part-{stem}.parquet"),
        k => format!("part-{stem}=P{k:05}.parquet"),
    }
}

/// Whether `name` (relative to an output prefix) is one of the shard `stem`'s data
/// parts or errors tables, whatever its part number: the files a rerun of the shard
/// may replace. Exact, since stems escape `=`: `part-a=P00001.parquet` is part 1 of
/// `a`, never a part of another shard.
pub fn belongs_to_shard(stem: &str, name: &str) -> bool {
    let numbered = |rest: &str| {
        rest == ".parquet"
            || rest
                .strip_prefix("=P")
                .and_then(|r| r.strip_suffix(".parquet"))
                .is_some_and(|k| k.len() >= 5 && k.bytes().all(|b| b.is_ascii_digit()))
    };
    let errors_dir = format!("{META_DIR}/errors/");
    [
        name.strip_prefix("part-"),
        name.strip_prefix(errors_dir.as_str()),
    ]
    .into_iter()
    .flatten()
    .any(|rest| rest.strip_prefix(stem).is_some_and(numbered))
}

/// The manifest of a committed shard.
pub fn manifest_name(stem: &str) -> String {
    format!("{META_DIR}/manifests/{stem}.json")
}

/// The errors table of part `k` of a shard.
pub fn errors_name(stem: &str, k: usize) -> String {
    match k {
        0 => format!("{META_DIR}/errors/{stem}.parquet"),
        k => format!("{META_DIR}/errors/{stem}=P{k:05}.parquet"),
    }
}

/// The run report `adps report` writes by default.
pub fn report_name() -> String {
    format!("{META_DIR}/report.html")
}

/// The progress record of a shard whose first parts are committed.
pub fn progress_name(stem: &str) -> String {
    format!("{META_DIR}/progress/{stem}.json")
}

/// The failure record of a shard that failed as a whole.
pub fn failed_name(stem: &str) -> String {
    format!("{META_DIR}/failed/{stem}.json")
}

/// The folder of the manifests, for listing.
pub fn manifests_dir() -> String {
    format!("{META_DIR}/manifests")
}

/// Whether a file name under an output prefix belongs to the layout of adps ≤ 0.1
/// (manifests and errors tables beside the parts), which this version does not resume.
pub fn is_legacy_name(name: &str) -> bool {
    !name.contains('/')
        && ((name.starts_with("part-") && name.ends_with(".manifest.json"))
            || (name.starts_with("errors-") && name.ends_with(".parquet")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_flat_names_never_collide() {
        let names = [
            "train/0.parquet",
            "test/0.parquet",
            "train=2F0.parquet",
            "train_0.parquet",
            "train-0.parquet",
            "0.parquet",
        ];
        let stems: std::collections::HashSet<String> =
            names.iter().map(|n| shard_stem(n)).collect();
        assert_eq!(stems.len(), names.len(), "{stems:?}");
        assert_eq!(shard_stem("train/0.parquet"), "train=2F0");
        assert_eq!(shard_stem("shard-00001.parquet"), "shard-00001");
    }

    #[test]
    fn stems_are_plain_ascii_that_no_store_rewrites() {
        let stem = shard_stem("über räume/ü 1%#~.parquet");
        assert_eq!(stem, "=C3=BCber=20r=C3=A4ume=2F=C3=BC=201=25=23=7E");
        // object_store keeps such a name as it is (no percent-encoding).
        let name = part_name(&stem, 0);
        let part = object_store::path::PathPart::from(name.as_str());
        assert_eq!(part.as_ref(), name);
    }

    #[test]
    fn a_shards_files_are_told_apart_from_its_neighbours() {
        let ours = [
            part_name("a", 0),
            part_name("a", 7),
            part_name("a", 123_456),
            errors_name("a", 0),
            errors_name("a", 2),
        ];
        for name in &ours {
            assert!(belongs_to_shard("a", name), "{name}");
            assert!(!belongs_to_shard("b", name), "{name}");
        }
        for name in [
            part_name("ab", 0),
            part_name("a-b", 1),
            part_name(&shard_stem("a=P00001.parquet"), 0),
            errors_name("ab", 0),
            manifest_name("a"),
            progress_name("a"),
            "part-a.parquet#1".to_string(),
            "part-a=P12.parquet".to_string(),
            "part-a=Pxxxxx.parquet".to_string(),
        ] {
            assert!(!belongs_to_shard("a", &name), "{name}");
        }
    }

    #[test]
    fn later_parts_never_meet_another_shards_names() {
        assert_eq!(part_name("a", 0), "part-a.parquet");
        assert_eq!(part_name("a", 3), "part-a=P00003.parquet");
        // A shard literally named `a=P00003` is escaped: its `=` becomes `=3D`.
        assert_eq!(
            part_name(&shard_stem("a=P00003.parquet"), 0),
            "part-a=3DP00003.parquet"
        );
    }

    #[test]
    fn legacy_names_are_recognised() {
        assert!(is_legacy_name("part-shard-00000.manifest.json"));
        assert!(is_legacy_name("errors-shard-00000.parquet"));
        assert!(!is_legacy_name("part-shard-00000.parquet"));
        assert!(!is_legacy_name("__adps/manifests/shard-00000.json"));
    }
}
