//! Agent pseudonyms: an `agent_id` that holds an e-mail address (the seed's own
//! `user:admin@company.com`) becomes `agent-` and 16 hex digits of HMAC-SHA256 under the
//! lake's pseudonym key, so that agents stay distinct and stable (the same agent, the same
//! value, in every pass and version, and in every lake made with the same key) while their
//! addresses stay out of what analysts read. The mapping back is the restricted
//! `agent_identities` table, which auditors read.
//!
//! The identity is compared trimmed and in lower case: `Agent7@Company.com` and
//! `agent7@company.com` are one agent (mail systems treat them so).

use std::fmt;
use std::sync::Arc;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Shortest pseudonym key accepted (characters).
pub const MIN_KEY_CHARS: usize = 32;

/// What a pseudonym starts with.
pub const PSEUDONYM_PREFIX: &str = "agent-";

/// A lake's pseudonym key. Its `Debug` shows only the fingerprint.
#[derive(Clone)]
pub struct PseudonymKey {
    mac: hmac::Hmac<Sha256>,
    fingerprint: String,
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudonymKey").field("fingerprint", &self.fingerprint).finish()
    }
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("a pseudonym key must have at least {MIN_KEY_CHARS} characters (it has {0})")]
pub struct KeyTooShort(pub usize);

impl PseudonymKey {
    /// The key made of `secret`'s bytes.
    pub fn new(secret: &str) -> Result<Self, KeyTooShort> {
        let chars = secret.chars().count();
        if chars < MIN_KEY_CHARS {
            return Err(KeyTooShort(chars));
        }
        let mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
        let digest = Sha256::new().chain_update(b"cclake pseudonym key\0").chain_update(secret.as_bytes()).finalize();
        let fingerprint = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { mac, fingerprint })
    }

    /// A new random key (256 bits, as 64 hex digits).
    pub fn generate() -> (Self, String) {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        (Self::new(&secret).expect("64 characters"), secret)
    }

    /// Names the key without revealing it: 16 hex digits of a SHA-256 of it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The keyed hash an erased id is recorded by (HMAC-SHA-256, 64 hex digits; domain
    /// separated from agent pseudonyms): what a later delivery is checked against, without
    /// the id kept in clear.
    pub fn erasure_hash(&self, id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"cclake erasure\0");
        mac.update(id.trim().as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The pseudonym of an agent identity.
    pub fn pseudonym(&self, identity: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(identity.trim().to_lowercase().as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(PSEUDONYM_PREFIX.len() + 16);
        out.push_str(PSEUDONYM_PREFIX);
        for b in &tag[..8] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// Pseudonyms as one parser hands them out: each identity is keyed once, and said to be
/// new the first time, when its `agent_identities` row is staged.
#[derive(Debug, Clone)]
pub struct AgentPseudonyms {
    key: Arc<PseudonymKey>,
    /// DataFusion's map (foldhash): each record's agent is looked up in it.
    seen: datafusion::common::HashMap<String, Arc<str>>,
}

impl AgentPseudonyms {
    pub fn new(key: Arc<PseudonymKey>) -> Self {
        Self { key, seen: Default::default() }
    }

    /// The pseudonym of an identity this parser already met, without looking at it again.
    pub fn known(&self, identity: &str) -> Option<Arc<str>> {
        self.seen.get(identity).cloned()
    }

    /// The pseudonym of `identity`, and whether this is the first time it was asked for.
    pub fn pseudonym(&mut self, identity: &str) -> (Arc<str>, bool) {
        if let Some(known) = self.seen.get(identity) {
            return (Arc::clone(known), false);
        }
        let pseudonym: Arc<str> = self.key.pseudonym(identity).into();
        self.seen.insert(identity.to_string(), Arc::clone(&pseudonym));
        (pseudonym, true)
    }

    /// The same key, nothing seen yet: for the next part of an object.
    pub fn fresh(&self) -> Self {
        Self::new(Arc::clone(&self.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn pseudonym_is_the_hmac_of_the_identity_in_lower_case() {
        let key = PseudonymKey::new(SECRET).unwrap();
        // Computed here with the hmac crate directly, not through `pseudonym`.
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(b"user:agent007@company.com");
        let tag = mac.finalize().into_bytes();
        let want: String = format!("agent-{}", tag[..8].iter().map(|b| format!("{b:02x}")).collect::<String>());
        assert_eq!(key.pseudonym("user:agent007@company.com"), want);
        assert_eq!(key.pseudonym(" User:Agent007@Company.COM "), want);
        assert_ne!(key.pseudonym("user:agent008@company.com"), want);
        let other = PseudonymKey::new(&SECRET.replace('0', "1")).unwrap();
        assert_ne!(other.pseudonym("user:agent007@company.com"), want);
        assert_ne!(key.fingerprint(), other.fingerprint());
        assert!(!format!("{key:?}").contains(SECRET));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(PseudonymKey::new("short").unwrap_err().0, 5);
        let (key, secret) = PseudonymKey::generate();
        assert_eq!(secret.len(), 64);
        assert_eq!(PseudonymKey::new(&secret).unwrap().fingerprint(), key.fingerprint());
    }

    #[test]
    fn each_identity_is_new_once() {
        let mut agents = AgentPseudonyms::new(Arc::new(PseudonymKey::new(SECRET).unwrap()));
        let (a, new) = agents.pseudonym("a@x.com");
        assert!(new);
        assert_eq!(agents.pseudonym("a@x.com"), (a.clone(), false));
        assert!(agents.fresh().pseudonym("a@x.com").1);
    }
}
