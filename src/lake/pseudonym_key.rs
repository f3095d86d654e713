//! The lake's agent pseudonym key ([`crate::ingest::pseudonym`]), kept so that every pass
//! of every writer makes the same pseudonyms: `_cclake/pseudonym-key.json` records the key's
//! fingerprint, and the key itself when cclake made it.
//!
//! - A lake's first pass without `CCLAKE_PSEUDONYM_KEY` makes a random key and keeps it in
//!   the file: pseudonyms are stable within the lake. Whoever can read the lake's storage
//!   can read the key, as they can read `agent_identities`; analysts reach the lake only
//!   through the server, which serves neither.
//! - With `CCLAKE_PSEUDONYM_KEY` (at least 32 characters) only its fingerprint is kept:
//!   the same key gives the same pseudonyms in every lake (a lake rebuilt from the exports
//!   keeps them), and a pass with another key, or none, is refused rather than mixing
//!   two sets of pseudonyms in one lake.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::ingest::pseudonym::PseudonymKey;
use crate::storage::{Location, StorageError};

const KEY_FILE: [&str; 2] = ["_cclake", "pseudonym-key.json"];
const ALGORITHM: &str = "HMAC-SHA256";

/// The environment variable that gives a key of one's own.
pub const KEY_VARIABLE: &str = "CCLAKE_PSEUDONYM_KEY";

/// Why the lake's pseudonym key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the agent pseudonyms of {lake} were made with another key (fingerprint {kept}) than the one given in {KEY_VARIABLE} (fingerprint {given}): pass the lake's own key, or ingest into a new lake")]
    Mismatch { lake: String, kept: String, given: String },
    #[error("the agent pseudonyms of {lake} were made with a key from {KEY_VARIABLE} (fingerprint {kept}), which is not set: set it to the same key")]
    Missing { lake: String, kept: String },
    #[error("{file} is damaged ({why}): restore it from a backup; making a new key would give every agent a new pseudonym")]
    Corrupt { file: String, why: String },
    #[error("cannot read or write {file}: {source}")]
    Store { file: String, source: object_store::Error },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyFile {
    algorithm: String,
    fingerprint: String,
    /// Present only when cclake made the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// The key the lake's pseudonyms are made with: the one it keeps, or (on its first pass)
/// `given`, else a new one. Called under the writer lease.
pub async fn lake_key(lake: &Location, given: Option<&Arc<PseudonymKey>>) -> Result<Arc<PseudonymKey>, KeyError> {
    let (store, prefix) = lake.object_store()?;
    let path = KEY_FILE.iter().fold(prefix, |path, part| path.join(*part));
    let file = path.to_string();
    let store_error = |source| KeyError::Store { file: file.clone(), source };
    // Twice at most: a file created by another process between the read and the create is
    // read the second time.
    for _ in 0..2 {
        if let Some(kept) = read(store.as_ref(), &path).await.map_err(store_error)? {
            let kept: KeyFile = serde_json::from_slice(&kept).map_err(|e| KeyError::Corrupt { file: file.clone(), why: e.to_string() })?;
            return use_kept(lake, &file, kept, given);
        }
        let (key, record) = match given {
            Some(key) => (Arc::clone(key), KeyFile { algorithm: ALGORITHM.into(), fingerprint: key.fingerprint().into(), key: None }),
            None => {
                let (key, secret) = PseudonymKey::generate();
                let fingerprint = key.fingerprint().to_string();
                (Arc::new(key), KeyFile { algorithm: ALGORITHM.into(), fingerprint, key: Some(secret) })
            }
        };
        let payload = PutPayload::from(serde_json::to_vec_pretty(&record).expect("a key file serialises"));
        match store.put_opts(&path, payload, PutOptions { mode: PutMode::Create, ..Default::default() }).await {
            Ok(_) => return Ok(key),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => continue,
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(KeyError::Corrupt { file, why: "it appeared and disappeared while being read".into() })
}

async fn read(store: &dyn ObjectStore, path: &Path) -> Result<Option<bytes::Bytes>, object_store::Error> {
    match store.get(path).await {
        Ok(got) => got.bytes().await.map(Some),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn use_kept(lake: &Location, file: &str, kept: KeyFile, given: Option<&Arc<PseudonymKey>>) -> Result<Arc<PseudonymKey>, KeyError> {
    let corrupt = |why: String| KeyError::Corrupt { file: file.to_string(), why };
    if kept.algorithm != ALGORITHM {
        return Err(corrupt(format!("algorithm {:?}, expected {ALGORITHM}", kept.algorithm)));
    }
    if let Some(given) = given {
        if given.fingerprint() != kept.fingerprint {
            return Err(KeyError::Mismatch { lake: lake.to_string(), kept: kept.fingerprint, given: given.fingerprint().into() });
        }
        return Ok(Arc::clone(given));
    }
    let Some(secret) = kept.key else {
        return Err(KeyError::Missing { lake: lake.to_string(), kept: kept.fingerprint });
    };
    let key = PseudonymKey::new(&secret).map_err(|e| corrupt(e.to_string()))?;
    if key.fingerprint() != kept.fingerprint {
        return Err(corrupt("the key does not match its fingerprint".into()));
    }
    Ok(Arc::new(key))
}
