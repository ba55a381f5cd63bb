//! Server-side training sources: an object-store URL the server reads
//! itself (`s3://`, `gs://`, `az://`, `file://`), whose last path segments
//! may hold glob patterns. Only prefixes the operator allowed
//! (`--data-source-allow`) may be read, and a refused source is refused
//! before anything is listed or read. Credentials come from the server's
//! environment, as each cloud's own tools read them (`AWS_*`, `GOOGLE_*`,
//! `AZURE_*`).

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use globset::{GlobBuilder, GlobMatcher};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serval_model::training::SourceObject;
use url::Url;

use crate::error::ServalError;
use crate::spool::{Spool, Spooled};

/// Schemes a source may use.
const SCHEMES: [&str; 4] = ["s3", "gs", "az", "file"];

/// The prefixes sources may be read from, and how much one may hold.
#[derive(Debug, Clone, Default)]
pub struct DataSources {
    allowed: Vec<String>,
    /// Bytes one source's objects may hold in all (`--max-source-bytes`);
    /// `None` for no bound.
    max_bytes: Option<u64>,
}

/// A source asked for, checked against the allowed prefixes.
#[derive(Debug, Clone)]
pub struct Source {
    url: Url,
    /// The path up to the first segment with a glob character: where to
    /// list.
    listed: String,
    /// The whole path pattern; `None` when the source names one object.
    pattern: Option<GlobMatcher>,
}

/// Objects read from a source, in path order, with their bytes (in memory,
/// or in temporary files once they outgrow the spill threshold).
pub struct SourceData {
    pub objects: Vec<SourceObject>,
    pub files: Vec<(String, Spooled)>,
}

fn has_glob(segment: &str) -> bool {
    segment.contains(['*', '?', '[', '{'])
}

/// `source` split at its scheme, checked: a known scheme, and no empty,
/// `.` or `..` path segment.
fn parse(source: &str) -> Result<Url, String> {
    // The URL parser would resolve `..` away; a source that spells one is
    // refused as written rather than silently re-aimed.
    let dot_segment = |s: &str| {
        let s = s.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    };
    if source.split(['/', '\\']).skip(3).any(dot_segment) {
        return Err("a path segment is . or ..".into());
    }
    let url = Url::parse(source).map_err(|e| format!("not a URL: {e}"))?;
    if !SCHEMES.contains(&url.scheme()) {
        return Err(format!(
            "scheme {:?} is not one of s3://, gs://, az://, file://",
            url.scheme()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a source has no query or fragment".into());
    }
    let path = url.path().trim_start_matches('/');
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err("a path segment is . or ..".into());
    }
    Ok(url)
}

impl DataSources {
    /// Checks the operator's prefixes (each an s3://, gs://, az:// or
    /// file:// URL); a prefix ends at a `/` so that `s3://bucket/clicks/`
    /// does not allow `s3://bucket/clicks-private/`.
    pub fn new(prefixes: &[String]) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for prefix in prefixes {
            let url = parse(prefix).map_err(|e| format!("--data-source-allow {prefix:?}: {e}"))?;
            if has_glob(url.path()) {
                return Err(format!(
                    "--data-source-allow {prefix:?}: a prefix holds no glob pattern"
                ));
            }
            let mut text = url.to_string();
            if !text.ends_with('/') {
                text.push('/');
            }
            allowed.push(text);
        }
        Ok(DataSources {
            allowed,
            max_bytes: None,
        })
    }

    /// These prefixes, with at most `max_bytes` read from one source
    /// (`None`: no bound).
    pub fn with_max_bytes(self, max_bytes: Option<u64>) -> Self {
        DataSources { max_bytes, ..self }
    }

    /// Whether any prefix is allowed.
    pub fn any_allowed(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// `source` if an allowed prefix covers everything it may name:
    /// PERMISSION_DENIED otherwise, INVALID_ARGUMENT when it is not a
    /// source URL at all.
    pub fn check(&self, source: &str) -> Result<Source, ServalError> {
        let url =
            parse(source).map_err(|e| ServalError::InvalidArgument(format!("source {source:?}: {e}")))?;
        let path = url.path().trim_start_matches('/');
        let segments: Vec<&str> = path.split('/').collect();
        let literal = segments.iter().take_while(|s| !has_glob(s)).count();
        let pattern = (literal < segments.len())
            .then(|| {
                GlobBuilder::new(path)
                    .literal_separator(true)
                    .build()
                    .map(|glob| glob.compile_matcher())
                    .map_err(|e| ServalError::InvalidArgument(format!("source {source:?}: {e}")))
            })
            .transpose()?;
        // Everything the source may name starts with its literal part.
        let mut literal_url = url.clone();
        let listed = if pattern.is_some() {
            segments[..literal]
                .iter()
                .map(|s| format!("{s}/"))
                .collect::<String>()
        } else {
            path.to_string()
        };
        literal_url.set_path(&format!("/{listed}"));
        let covered = literal_url.to_string();
        if !self
            .allowed
            .iter()
            .any(|prefix| covered.starts_with(prefix.as_str()))
        {
            let why = if self.allowed.is_empty() {
                "this server reads no sources (its operator allowed none with --data-source-allow)"
                    .to_string()
            } else {
                format!(
                    "it is outside the prefixes this server's operator allowed ({})",
                    self.allowed.join(", ")
                )
            };
            return Err(ServalError::PermissionDenied(format!("source {source:?}: {why}")));
        }
        Ok(Source { url, listed, pattern })
    }

    /// Lists the objects `source` names and reads them, refused before
    /// any is read when they hold more than the server's bound; when they
    /// hold more than `spill_after` bytes in all, each is written to a
    /// temporary file as it arrives.
    pub async fn read(&self, source: &Source, spill_after: usize) -> Result<SourceData, ServalError> {
        let (store, root) = store_for(&source.url)?;
        let unavailable = |e: object_store::Error| {
            ServalError::Unavailable(format!("cannot read the source {}: {e}", source.url))
        };
        let listed = Path::parse(source.listed.trim_matches('/'))
            .map_err(|e| ServalError::InvalidArgument(format!("source {}: {e}", source.url)))?;
        let mut metas = match &source.pattern {
            None => vec![store.head(&listed).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    ServalError::InvalidArgument(format!("source {}: no such object", source.url))
                }
                other => unavailable(other),
            })?],
            Some(pattern) => {
                let prefix = listed;
                let listed: Vec<_> = store
                    .list(Some(&prefix))
                    .try_collect()
                    .await
                    .map_err(unavailable)?;
                listed
                    .into_iter()
                    .filter(|meta| {
                        let relative = relative_to(&meta.location, &root);
                        pattern.is_match(relative)
                    })
                    .collect()
            }
        };
        metas.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
        if metas.is_empty() {
            return Err(ServalError::InvalidArgument(format!(
                "source {}: no object matches",
                source.url
            )));
        }
        let total: u64 = metas.iter().map(|m| m.size).sum();
        if let Some(max_bytes) = self.max_bytes
            && total > max_bytes
        {
            return Err(ServalError::InvalidArgument(format!(
                "source {}: {} objects hold {total} bytes, more than the server's limit of {max_bytes} \
                 (--max-source-bytes)",
                source.url,
                metas.len()
            )));
        }
        let mut data = SourceData {
            objects: Vec::with_capacity(metas.len()),
            files: Vec::with_capacity(metas.len()),
        };
        for meta in metas {
            let object = store.get(&meta.location).await.map_err(unavailable)?;
            // A listing may leave the entity tag out; the read carries it.
            let e_tag = object.meta.e_tag.clone().or(meta.e_tag).unwrap_or_default();
            let mut spool = Spool::new(if total > spill_after as u64 { 0 } else { usize::MAX });
            let mut parts = object.into_stream();
            while let Some(part) = parts.next().await {
                spool.write(&part.map_err(unavailable)?).await?;
            }
            let path = object_url(&source.url, &meta.location, &root);
            data.objects.push(SourceObject {
                path: path.clone(),
                size: spool.len(),
                e_tag,
            });
            data.files.push((path, spool.finish().await?));
        }
        Ok(data)
    }
}

/// The store a source URL lives in, configured from the environment, and
/// the path of the URL's root in it (the bucket's root, or `/` for files).
fn store_for(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path), ServalError> {
    let bucket = || {
        let mut root = url.clone();
        root.set_path("");
        root.to_string()
    };
    let failed = |e: object_store::Error| {
        ServalError::FailedPrecondition(format!("cannot reach the store of {url}: {e}"))
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(bucket())
                .build()
                .map_err(failed)?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(bucket())
                .build()
                .map_err(failed)?,
        ),
        "az" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(bucket())
                .build()
                .map_err(failed)?,
        ),
        _ => Arc::new(object_store::local::LocalFileSystem::new()),
    };
    Ok((store, Path::default()))
}

/// `location` relative to `root`, as text.
fn relative_to<'a>(location: &'a Path, root: &Path) -> &'a str {
    location
        .as_ref()
        .strip_prefix(root.as_ref())
        .unwrap_or(location.as_ref())
        .trim_start_matches('/')
}

/// The full URL of an object of the store `source` lives in.
fn object_url(source: &Url, location: &Path, root: &Path) -> String {
    let mut url = source.clone();
    url.set_path(&format!("/{}", relative_to(location, root)));
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(prefixes: &[&str]) -> DataSources {
        DataSources::new(&prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn denied(sources: &DataSources, source: &str) -> bool {
        matches!(sources.check(source), Err(ServalError::PermissionDenied(_)))
    }

    #[test]
    fn only_sources_under_an_allowed_prefix_are_read() {
        let s = sources(&["s3://bucket/clicks", "file:///data/exports/"]);
        assert!(s.check("s3://bucket/clicks/date=2026-11-*/*.parquet").is_ok());
        assert!(s.check("s3://bucket/clicks/one.parquet").is_ok());
        assert!(s.check("file:///data/exports/2026/*.csv").is_ok());
        // A sibling whose name only starts like the prefix.
        assert!(denied(&s, "s3://bucket/clicks-private/a.parquet"));
        // A pattern that could reach outside the prefix.
        assert!(denied(&s, "s3://bucket/cl*/a.parquet"));
        assert!(denied(&s, "s3://other/clicks/a.parquet"));
        assert!(denied(&s, "gs://bucket/clicks/a.parquet"));
        assert!(denied(&s, "file:///etc/passwd"));
        // Not sources at all.
        for bad in [
            "s3://bucket/clicks/../secret/a",
            "http://x/y",
            "clicks/a.parquet",
            "s3://bucket/clicks/a?x=1",
        ] {
            assert!(
                matches!(s.check(bad), Err(ServalError::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_server_that_allows_nothing_says_so() {
        let error = sources(&[])
            .check("s3://bucket/a.parquet")
            .unwrap_err()
            .to_string();
        assert!(error.contains("allowed none with --data-source-allow"), "{error}");
        assert!(DataSources::new(&["s3://bucket/*".to_string()]).is_err());
        assert!(DataSources::new(&["ftp://x/".to_string()]).is_err());
    }

    #[tokio::test]
    async fn a_glob_reads_the_matching_files_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        for (day, text) in [("2026-11-02", "b"), ("2026-11-01", "a"), ("2026-10-31", "x")] {
            let folder = dir.path().join(format!("clicks/date={day}"));
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("part-0.csv"), text).unwrap();
            std::fs::write(folder.join("_SUCCESS"), "").unwrap();
        }
        let root = format!("file://{}/clicks/", dir.path().display());
        let s = sources(&[&root]);
        let source = s.check(&format!("{root}date=2026-11-*/*.csv")).unwrap();
        let data = s.read(&source, 1 << 20).await.unwrap();
        let contents: Vec<Vec<u8>> = data.files.iter().map(|(_, b)| b.read().unwrap()).collect();
        assert_eq!(contents, [&b"a"[..], b"b"]);
        assert!(data.files.iter().all(|(_, b)| !b.spilled()));
        // Past the threshold, every object goes to disk and reads back.
        let spilled = s.read(&source, 1).await.unwrap();
        assert!(spilled.files.iter().all(|(_, b)| b.spilled()));
        let contents: Vec<Vec<u8>> = spilled.files.iter().map(|(_, b)| b.read().unwrap()).collect();
        assert_eq!(contents, [&b"a"[..], b"b"]);
        assert!(
            data.objects[0]
                .path
                .ends_with("clicks/date=2026-11-01/part-0.csv"),
            "{:?}",
            data.objects
        );
        assert_eq!(data.objects[1].size, 1);
        let bounded = s.clone().with_max_bytes(Some(1));
        let too_small = bounded.read(&source, 1 << 20).await.err().unwrap().to_string();
        assert!(
            too_small
                .contains("2 objects hold 2 bytes, more than the server's limit of 1 (--max-source-bytes)"),
            "{too_small}"
        );
        assert!(
            s.clone()
                .with_max_bytes(Some(2))
                .read(&source, 1 << 20)
                .await
                .is_ok()
        );
        let none = s.check(&format!("{root}date=2025-*/*.csv")).unwrap();
        assert!(s.read(&none, 1 << 20).await.is_err());
    }
}
