//! What a source must be before a pass reads it: not missing, not a lake, not overlapping
//! the lake it feeds.

use crate::lake::{Lake, LakeError, LakeTable};
use crate::storage::{has_objects_under, Location};

impl Lake {
    /// Refuses a source that cannot be exports for this lake: a missing local folder, a
    /// lake (the flags swapped), or a folder overlapping the lake (a pass would read the
    /// lake's own files as exports).
    pub async fn check_source(&self, source: &Location) -> Result<(), LakeError> {
        // An empty source is fine here: a scheduled pass may find its folder still empty.
        check_source_location(source, self.root(), false).await
    }
}

/// See [`Lake::check_source`]; callable before the lake exists, so that swapped flags never
/// create a lake inside the exports. With `require_objects`, a source holding no object at
/// all is [`LakeError::SourceEmpty`] too (a one-off `cclake ingest`).
pub async fn check_source_location(source: &Location, lake: &Location, require_objects: bool) -> Result<(), LakeError> {
    let (source_url, lake_url) = (source.url().as_str(), lake.url().as_str());
    if source_url.starts_with(lake_url) || lake_url.starts_with(source_url) {
        return Err(LakeError::SourceOverlapsLake { source_location: source.to_string(), lake: lake.to_string() });
    }
    if let Ok(path) = source.url().to_file_path() {
        if source.url().scheme() == "file" && !path.exists() {
            return Err(LakeError::SourceMissing { source_location: path.display().to_string() });
        }
    }
    let markers: Vec<Vec<&str>> = std::iter::once(vec!["_delta_log"])
        .chain(LakeTable::ALL.iter().map(|t| vec![t.name(), "_delta_log"]))
        .collect();
    for marker in markers {
        if has_objects_under(source, &marker).await? {
            return Err(LakeError::SourceIsALake { source_location: source.to_string(), marker: marker.join("/") });
        }
    }
    if require_objects && !has_objects_under(source, &[]).await? {
        return Err(LakeError::SourceEmpty { source_location: source.to_string() });
    }
    Ok(())
}
