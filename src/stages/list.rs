//! List: the input prefix's Parquet shards in lexicographic order, and this worker's
//! share of them (`[i::n]`, stateless). The plan drops those already committed.

use anyhow::{Context, Result};

use super::Shard;
use crate::io::store::Location;

/// Every `*.parquet` (any case: `.PARQUET` from some exporters) directly or indirectly
/// under the input prefix, sorted by key.
pub fn list_shards(rt: &tokio::runtime::Handle, input: &Location) -> Result<Vec<Shard>> {
    let mut metas = input.list(rt).context("input")?;
    metas.retain(|m| {
        m.location
            .as_ref()
            .to_ascii_lowercase()
            .ends_with(".parquet")
    });
    metas.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    let mut keys_of = std::collections::HashMap::new();
    let mut stems = std::collections::HashMap::new();
    let local = input.local_dir().is_some();
    let mut shards = Vec::with_capacity(metas.len());
    for m in metas {
        // object_store percent-encodes some characters in keys (non-ASCII ones on S3,
        // not on local disks): the identity is the name as the user wrote it.
        let rel = input.relative(&m.location);
        let rel = percent_encoding::percent_decode_str(&rel)
            .decode_utf8_lossy()
            .into_owned();
        // As pyarrow and Hugging Face datasets do: files and folders whose name starts
        // with `_` or `.` are metadata, not data (`_delta_log/`, `._x.parquet` from
        // macOS, an adps output's `__adps/` when its parts are the input).
        if rel
            .split('/')
            .any(|part| part.starts_with('_') || part.starts_with('.'))
        {
            continue;
        }
        // Two keys that decode alike (a literal `%2F` beside a real `/`) would write
        // the same outputs: refused, naming both, rather than merged.
        if let Some(other) = keys_of.insert(rel.clone(), m.location.to_string()) {
            anyhow::bail!(
                "input keys `{other}` and `{}` both name the shard `{rel}` (a percent escape \
                 in a key reads as the character it stands for); rename one of them",
                m.location
            );
        }
        // Names that differ only by the case of their `.parquet` (`a.PARQUET` beside
        // `a.PARQUET.parquet`) escape to one output stem: refused, naming both, since
        // one shard's outputs would replace the other's.
        let stem = crate::io::layout::shard_stem(&rel);
        if let Some(other) = stems.insert(stem.clone(), rel.clone()) {
            anyhow::bail!(
                "input shards `{other}` and `{rel}` would write the same outputs (`{stem}`): \
                 a `.parquet` suffix in another case is part of the name; rename one of them"
            );
        }
        let mut shard = Shard::new(
            shards.len(),
            rel.clone(),
            input.child_url(&rel),
            m.location.clone(),
        );
        shard.version = Some(crate::stages::InputVersion::of(&m, local));
        shards.push(shard);
    }
    Ok(shards)
}

/// Applies `input.limit`: the first `limit` records of the input in listing order, the
/// same on every rerun and for every worker (so resuming never moves the window, and
/// `n` workers together restore what one would). Reads Parquet footers (row counts) in
/// order until the limit is covered; later shards are dropped. A shard whose footer
/// cannot be read stops the run: without its row count the window is unknown, and a
/// window that skipped it would move once it reads again (committing rows past the
/// limit, or taking a committed shard's cut for another and deleting its outputs).
pub fn apply_limit(
    rt: &tokio::runtime::Handle,
    input: &Location,
    shards: Vec<Shard>,
    limit: usize,
) -> Result<Vec<Shard>> {
    let mut left = limit;
    let mut kept = Vec::new();
    for mut s in shards {
        if left == 0 {
            break;
        }
        let rows =
            crate::io::parquet_in::row_count(rt, &input.store, &s.key).with_context(|| {
                format!(
                    "input.limit {limit}: the row count of {} (its Parquet footer) is needed to \
                 place the window; fix or remove the shard",
                    s.url
                )
            })?;
        if rows >= left {
            s.take = Some(left);
            left = 0;
        } else {
            left -= rows;
        }
        kept.push(s);
    }
    Ok(kept)
}

/// The shards worker `index` of `count` owns: every `count`-th, starting at `index`.
pub fn select_for_worker(shards: Vec<Shard>, index: usize, count: usize) -> Vec<Shard> {
    shards
        .into_iter()
        .filter(|s| s.index % count == index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(i: usize) -> Shard {
        Shard::new(
            i,
            format!("s{i}.parquet"),
            String::new(),
            object_store::path::Path::from(format!("s{i}.parquet")),
        )
    }

    #[test]
    fn two_keys_naming_one_shard_are_refused() {
        use object_store::ObjectStoreExt;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let input = crate::io::store::open("memory://list-collide/in").unwrap();
        for key in ["in/a%2Fb.parquet", "in/a/b.parquet", "in/c.parquet"] {
            let key = object_store::path::Path::parse(key).unwrap();
            rt.block_on(input.store.put(&key, b"PAR1".to_vec().into()))
                .unwrap();
        }
        let e = list_shards(rt.handle(), &input).unwrap_err().to_string();
        assert!(
            e.contains("a%2Fb.parquet") && e.contains("`a/b.parquet`"),
            "{e}"
        );
    }

    #[test]
    fn shards_are_found_whatever_the_case_of_their_extension_metadata_left_out() {
        use object_store::ObjectStoreExt;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let input = crate::io::store::open("memory://list-case/in").unwrap();
        for key in [
            "in/b.PARQUET",
            "in/a.parquet",
            "in/notes.txt",
            "in/__adps/errors/a.parquet",
            "in/._a.parquet",
            "in/_delta_log/0.checkpoint.parquet",
        ] {
            let key = object_store::path::Path::parse(key).unwrap();
            rt.block_on(input.store.put(&key, b"PAR1".to_vec().into()))
                .unwrap();
        }
        let names: Vec<String> = list_shards(rt.handle(), &input)
            .unwrap()
            .into_iter()
            .map(|s| s.path)
            .collect();
        assert_eq!(names, ["a.parquet", "b.PARQUET"]);
    }

    #[test]
    fn workers_split_shards_disjointly_and_completely() {
        let all: Vec<Shard> = (0..10).map(shard).collect();
        let mut seen = Vec::new();
        for i in 0..3 {
            seen.extend(
                select_for_worker(all.clone(), i, 3)
                    .into_iter()
                    .map(|s| s.index),
            );
        }
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(
            select_for_worker(all, 1, 3)
                .iter()
                .map(|s| s.index)
                .collect::<Vec<_>>(),
            vec![1, 4, 7]
        );
    }
}
