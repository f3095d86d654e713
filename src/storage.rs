//! Where sources and lakes live: a local path or an object-store URL, turned into an
//! [`ObjectStore`] plus a prefix inside it.
//!
//! Credentials and endpoints come from the environment the way each store's own builder
//! reads them (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`, `GOOGLE_*`,
//! `AZURE_*`), so cclake and the Delta writer see the same configuration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use url::Url;

/// Errors of turning a user's path or URL into a store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("'{0}' is not a valid location: {1}")]
    InvalidLocation(String, String),
    #[error("unsupported URL scheme '{0}' (use a path, file://, s3://, gs://, az://, abfss:// or memory://)")]
    UnsupportedScheme(String),
    #[error("cannot use local folder '{path}': {source}")]
    LocalFolder {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot configure the object store for '{url}': {source}")]
    Store {
        url: String,
        source: object_store::Error,
    },
    #[error("cannot list objects under {location}: {source}")]
    List {
        location: String,
        source: object_store::Error,
    },
}

/// A location given by the user, resolved to an absolute URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Always absolute and ending in `/`, so joining a child name never replaces the last
    /// segment.
    url: Url,
}

impl Location {
    /// Parses a local path (relative or absolute) or a URL. A local folder is created when
    /// `create` is set, since a lake may be opened before anything was written to it.
    pub fn parse(input: &str, create: bool) -> Result<Self, StorageError> {
        let invalid = |e: &dyn std::fmt::Display| {
            StorageError::InvalidLocation(input.to_string(), e.to_string())
        };
        let mut url = if input.contains("://") {
            Url::parse(input).map_err(|e| invalid(&e))?
        } else {
            let path = std::path::Path::new(input);
            if create {
                std::fs::create_dir_all(path).map_err(|source| StorageError::LocalFolder {
                    path: input.to_string(),
                    source,
                })?;
            }
            let absolute = resolve_local(path).map_err(|source| StorageError::LocalFolder {
                path: input.to_string(),
                source,
            })?;
            Url::from_directory_path(&absolute)
                .map_err(|()| invalid(&"not an absolute local path"))?
        };
        // A file:// URL names the same folder as the path it spells: resolved alike.
        if url.scheme() == "file" && input.contains("://") {
            if let Ok(path) = url.to_file_path() {
                let resolved = resolve_local(&path).map_err(|source| StorageError::LocalFolder { path: input.to_string(), source })?;
                url = Url::from_directory_path(&resolved).map_err(|()| invalid(&"not an absolute local path"))?;
            }
        }
        match url.scheme() {
            "file" => {
                if create {
                    let path = url
                        .to_file_path()
                        .map_err(|()| invalid(&"not a local file URL"))?;
                    std::fs::create_dir_all(&path).map_err(|source| StorageError::LocalFolder {
                        path: input.to_string(),
                        source,
                    })?;
                }
            }
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "memory" => {}
            other => return Err(StorageError::UnsupportedScheme(other.to_string())),
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(Self { url })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The location of a child folder (a table under the lake root).
    pub fn join(&self, name: &str) -> Self {
        let mut url = self.url.clone();
        url.set_path(&format!("{}{}/", self.url.path(), name));
        Self { url }
    }

    pub fn is_memory(&self) -> bool {
        self.url.scheme() == "memory"
    }

    /// The object store holding this location and the prefix of the location inside it.
    pub fn object_store(&self) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
        let store_err = |source| StorageError::Store {
            url: self.url.to_string(),
            source,
        };
        let store: Arc<dyn ObjectStore> = match self.url.scheme() {
            "file" => Arc::new(LocalFileSystem::new()),
            "memory" => memory_store(self.url.host_str().unwrap_or_default()),
            "s3" | "s3a" => Arc::new(
                AmazonS3Builder::from_env()
                    .with_url(self.url.as_str())
                    .build()
                    .map_err(store_err)?,
            ),
            "gs" => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_url(self.url.as_str())
                    .build()
                    .map_err(store_err)?,
            ),
            _ => Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_url(self.url.as_str())
                    .build()
                    .map_err(store_err)?,
            ),
        };
        let prefix = match self.url.scheme() {
            "file" => {
                let path = self.url.to_file_path().map_err(|()| {
                    StorageError::InvalidLocation(self.url.to_string(), "not a local path".into())
                })?;
                Path::from_absolute_path(&path).map_err(|e| StorageError::Store {
                    url: self.url.to_string(),
                    source: e.into(),
                })?
            }
            // For buckets and containers the URL's host is the bucket; the path is the prefix.
            _ => Path::from_url_path(self.url.path()).map_err(|e| StorageError::Store {
                url: self.url.to_string(),
                source: e.into(),
            })?,
        };
        Ok((store, prefix))
    }
}

/// The one absolute spelling of a local path, whatever way the user wrote it: relative to
/// the current folder, with `.` and `..`, through symbolic links, with trailing slashes. The
/// part that exists is resolved by the file system (so `..` after a symbolic link means what
/// the shell means), the rest, not yet created, component by component.
fn resolve_local(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::path::Component;
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    let resolved = loop {
        match std::fs::canonicalize(existing) {
            Ok(resolved) => break resolved,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    missing.push(Component::Normal(name));
                    existing = parent;
                }
                // `..` or the root itself: left to the lexical pass below.
                _ => break existing.to_path_buf(),
            },
            Err(e) => return Err(e),
        }
    };
    let mut resolved = resolved;
    for component in missing.into_iter().rev() {
        resolved.push(component);
    }
    // What is left of `.` and `..` (in components that do not exist yet) goes lexically.
    let mut normal = std::path::PathBuf::new();
    for component in resolved.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    Ok(normal)
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url.as_str())
    }
}


/// Whether any object lies under `location` joined with `segments` (a "folder" exists). A
/// local entry that cannot be listed is skipped, as in an ingest pass.
pub async fn has_objects_under(location: &Location, segments: &[&str]) -> Result<bool, StorageError> {
    if let (Ok(root), "file") = (location.url().to_file_path(), location.url().scheme()) {
        let root = segments.iter().fold(root, |path, segment| path.join(segment));
        let shown = root.display().to_string();
        // The first object answers: a large source is not walked whole.
        let (objects, _) = tokio::task::spawn_blocking(move || list_local_up_to(&root, 1))
            .await
            .map_err(|e| StorageError::LocalFolder { path: shown, source: std::io::Error::other(e) })?;
        return Ok(!objects.is_empty());
    }
    let (store, mut prefix) = location.object_store()?;
    for segment in segments {
        prefix = prefix.join(*segment);
    }
    match futures::StreamExt::next(&mut store.list(Some(&prefix))).await {
        None | Some(Err(object_store::Error::NotFound { .. })) => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(source)) => Err(StorageError::List { location: location.to_string(), source }),
    }
}

/// Lists the files under a local folder as `LocalFileSystem::list` would (same locations,
/// sizes, times and e-tags, so the ingest log recognises them), except that an entry it
/// cannot take is skipped and reported instead of ending the listing: a symbolic-link loop,
/// a name no object path can hold (a newline, a CR, a tab), an unreadable folder.
pub fn list_local(root: &std::path::Path) -> (Vec<ObjectMeta>, Vec<String>) {
    list_local_up_to(root, usize::MAX)
}

/// [`list_local`], stopping once `limit` objects are found.
fn list_local_up_to(root: &std::path::Path, limit: usize) -> (Vec<ObjectMeta>, Vec<String>) {
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    let mut skip = |what: String| skipped.push(what.escape_debug().to_string());
    for entry in walkdir::WalkDir::new(root).min_depth(1).follow_links(true) {
        if objects.len() >= limit {
            break;
        }
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                skip(e.to_string());
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let location = match Path::from_absolute_path(entry.path()) {
            Ok(location) => location,
            Err(e) => {
                skip(format!("{}: {e}", entry.path().display()));
                continue;
            }
        };
        if !is_valid_file_path(&location) {
            continue;
        }
        match entry.metadata() {
            Ok(metadata) => objects.push(local_meta(&metadata, location)),
            // Deleted while listing: nothing to ingest.
            Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => {}
            Err(e) => skip(format!("{}: {e}", entry.path().display())),
        }
    }
    (objects, skipped)
}

/// `LocalFileSystem` leaves out its in-progress uploads (`name#1`).
fn is_valid_file_path(path: &Path) -> bool {
    match path.filename() {
        Some(name) => match name.split_once('#') {
            Some((_, suffix)) if !suffix.is_empty() => !suffix.bytes().all(|b| b.is_ascii_digit()),
            _ => true,
        },
        None => false,
    }
}

/// An object's metadata as `LocalFileSystem` gives it (its e-tag: inode, mtime, size).
fn local_meta(metadata: &std::fs::Metadata, location: Path) -> ObjectMeta {
    let modified = metadata.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0u64;
    let micros = modified.duration_since(std::time::SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros();
    ObjectMeta {
        location,
        last_modified: modified.into(),
        size: metadata.len(),
        e_tag: Some(format!("{inode:x}-{micros:x}-{:x}", metadata.len())),
        version: None,
    }
}

/// `memory://NAME/` stores live as long as the process, shared by name, so a test can write
/// exports and a lake to the same named store and open it again.
pub fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut stores = match stores.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    stores
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_listing_matches_the_object_store_s() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.jsonl"), "{}").unwrap();
        std::fs::write(dir.path().join("y.json"), "[]").unwrap();
        let store = object_store::local::LocalFileSystem::new();
        let prefix = Path::from_absolute_path(dir.path()).unwrap();
        let mut expected: Vec<ObjectMeta> = futures::TryStreamExt::try_collect(store.list(Some(&prefix))).await.unwrap();
        let (mut listed, skipped) = list_local(dir.path());
        expected.sort_by(|a, b| a.location.cmp(&b.location));
        listed.sort_by(|a, b| a.location.cmp(&b.location));
        assert_eq!(listed, expected);
        assert!(skipped.is_empty());
    }


    #[test]
    fn relative_path_becomes_absolute_file_url() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("lake");
        let loc = Location::parse(input.to_str().unwrap(), true).unwrap();
        assert_eq!(loc.url().scheme(), "file");
        assert!(loc.url().path().ends_with("/lake/"));
        assert!(input.is_dir());
        assert!(loc.join("fact_interactions").url().path().ends_with("/lake/fact_interactions/"));
    }

    #[test]
    fn every_spelling_of_a_local_folder_names_the_same_location() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let lake = base.join("my lake é");
        std::fs::create_dir_all(lake.join("sub")).unwrap();
        std::os::unix::fs::symlink(&lake, base.join("link")).unwrap();
        let expected = Location::parse(lake.to_str().unwrap(), false).unwrap();
        let spellings = [
            format!("{}/", lake.display()),
            format!("{}//", lake.display()),
            format!("{}/./sub/..", lake.display()),
            format!("{}/link", base.display()),
            format!("{}/link/", base.display()),
            format!("{}", Url::from_directory_path(&lake).unwrap()),
            format!("{}", Url::from_directory_path(base.join("link")).unwrap()),
        ];
        for spelling in spellings {
            assert_eq!(Location::parse(&spelling, false).unwrap(), expected, "{spelling}");
        }
        // A folder not created yet, spelt with `..` through one that is not either.
        let later = Location::parse(&format!("{}/new/../later", base.display()), false).unwrap();
        assert_eq!(later.url().to_file_path().unwrap(), base.join("later"));
        // Relative to the current folder, with `..` (as `--lake ../g/lake` is).
        let cwd = std::env::current_dir().unwrap();
        let relative = Location::parse("../x/./y/..", false).unwrap();
        assert_eq!(relative.url().to_file_path().unwrap(), std::fs::canonicalize(&cwd).unwrap().parent().unwrap().join("x"));
    }

    #[test]
    fn urls_keep_bucket_and_prefix() {
        let loc = Location::parse("s3://bucket/exports/2024", false).unwrap();
        assert_eq!(loc.url().as_str(), "s3://bucket/exports/2024/");
        assert!(matches!(
            Location::parse("ftp://x/y", false),
            Err(StorageError::UnsupportedScheme(_))
        ));
    }

    #[test]
    fn memory_stores_are_shared_by_name() {
        let a = memory_store("shared-by-name");
        let b = memory_store("shared-by-name");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
