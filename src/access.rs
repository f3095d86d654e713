//! Who may connect and what they may read: users with argon2 password hashes and a role in
//! the TOML config file; the tables each role reads, derived from each table's sensitivity
//! in [`crate::model`]; the bearer tokens handed out by Handshake; and the pauses that
//! failed sign-ins earn. Below both the query side and the server, which use it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::model::{LakeTable, Sensitivity};

/// Errors of the config file and of authentication.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write config file {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Invalid { path: String, message: String },
    #[error("user '{0}' exists already (pass --replace to replace it)")]
    DuplicateUser(String),
    #[error("user names are 1-64 letters, digits, '.', '-' or '_'")]
    InvalidUserName,
    #[error("the password is empty")]
    EmptyPassword,
    #[error("the password has {0} characters: at least {MIN_PASSWORD_CHARS} are needed (any characters, spaces included; a passphrase is easiest)")]
    PasswordTooShort(usize),
    #[error("the password has {0} characters: at most {MAX_PASSWORD_CHARS} are taken")]
    PasswordTooLong(usize),
    #[error("{path} has no user '{name}'")]
    NoSuchUser { path: String, name: String },
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// The shortest password a user may be given. NIST SP 800-63B asks for a length, not
/// composition rules (no "a digit and a capital"), and for long passphrases to be taken.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password taken (NIST SP 800-63B: at least 64).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// What a user may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The tables of [`Sensitivity::Analytics`]: everything except the restricted
    /// `call_recordings`, `user_contacts` and `agent_identities` (not even in metadata
    /// listings).
    Analyst,
    /// Everything.
    Auditor,
}

impl Role {
    /// Whether this role may read (and see listed) tables of this sensitivity.
    pub fn may_read(self, sensitivity: Sensitivity) -> bool {
        match self {
            Role::Analyst => sensitivity == Sensitivity::Analytics,
            Role::Auditor => true,
        }
    }

    /// The lake's tables this role may not see, by name.
    pub fn hidden_tables(self) -> Vec<&'static str> {
        LakeTable::ALL.into_iter().filter(|t| !self.may_read(t.sensitivity())).map(LakeTable::name).collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
        }
    }
}

/// One user of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// PHC string (`$argon2id$...`); the password itself is never stored.
    pub password_hash: String,
}

/// Limits of the query side, from the `[server]` table of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Lifetime of a bearer token.
    pub token_ttl_seconds: u64,
    /// A query running longer is stopped with DEADLINE_EXCEEDED.
    pub query_timeout_seconds: u64,
    /// Queries running at once; more get RESOURCE_EXHAUSTED.
    pub max_concurrent_queries: usize,
    /// Memory one query may use before it spills to disk or fails.
    pub query_memory_limit_mb: usize,
    /// Memory the server keeps the newest files decoded in, shared by every query (0: every
    /// query reads Parquet). Files past it are read from Parquet.
    pub decoded_cache_mb: usize,
    /// Failed sign-ins in a row (per user name, and per client address) before sign-ins
    /// for it are refused for a while: 1 s, then twice as long after each further failure.
    pub failed_sign_ins_before_pause: u32,
    /// The longest such pause. A success ends it; bearer tokens already issued keep working.
    pub sign_in_pause_max_seconds: u64,
    /// Longest SQL text a query may have, in bytes (INVALID_ARGUMENT past it).
    pub max_sql_bytes: usize,
    /// Deepest expression a query may nest, once long `OR`/`AND` chains are flattened
    /// (INVALID_ARGUMENT past it). At most 4096.
    pub max_expression_depth: usize,
}

impl ServerSettings {
    /// The bounds on a query's SQL text.
    pub fn sql_limits(&self) -> crate::query::sql_guard::SqlLimits {
        crate::query::sql_guard::SqlLimits {
            max_sql_bytes: self.max_sql_bytes.max(1),
            max_expression_depth: self.max_expression_depth.clamp(1, crate::query::sql_guard::MAX_EXPRESSION_DEPTH),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            token_ttl_seconds: 3600,
            query_timeout_seconds: 300,
            max_concurrent_queries: 16,
            query_memory_limit_mb: 2048,
            decoded_cache_mb: 1024,
            failed_sign_ins_before_pause: 5,
            sign_in_pause_max_seconds: 30,
            max_sql_bytes: crate::query::sql_guard::DEFAULT_MAX_SQL_BYTES,
            max_expression_depth: crate::query::sql_guard::DEFAULT_MAX_EXPRESSION_DEPTH,
        }
    }
}

/// A config parse error naming an unknown key gets the nearest valid key added, so that
/// `query_timeout = 30` says "did you mean `query_timeout_seconds`?" (serde lists the valid
/// ones as "expected one of `a`, `b`").
fn with_nearest_key(message: &str) -> String {
    let quoted = |text: &str| -> Vec<String> { text.split('`').skip(1).step_by(2).map(str::to_string).collect() };
    let Some(rest) = message.split("unknown field ").nth(1) else { return message.to_string() };
    let Some(unknown) = quoted(rest).into_iter().next() else { return message.to_string() };
    let expected = rest.split("expected ").nth(1).map(quoted).unwrap_or_default();
    let nearest = expected.iter().min_by_key(|k| edit_distance(&unknown, k));
    match nearest {
        Some(key) => format!("{message}\nunknown key `{unknown}`: did you mean `{key}`?"),
        None => message.to_string(),
    }
}

/// Levenshtein distance, with a prefix counting as near (`query_timeout` for
/// `query_timeout_seconds`).
fn edit_distance(a: &str, b: &str) -> usize {
    if b.starts_with(a) || a.starts_with(b) {
        return 0;
    }
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The config file: `[server]` settings and `[[users]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub users: Vec<User>,
}

impl AccessConfig {
    /// Reads the config file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, AccessError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(AccessError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| AccessError::Invalid {
            path: path.display().to_string(),
            message: with_nearest_key(&e.to_string()),
        })
    }

    /// Removes a user; its bearer tokens end when the server reloads its config.
    pub fn remove_user(&mut self, path: &Path, name: &str) -> Result<(), AccessError> {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        if self.users.len() == before {
            return Err(AccessError::NoSuchUser { path: path.display().to_string(), name: name.to_string() });
        }
        Ok(())
    }

    /// Writes the file atomically (a temporary file renamed over it), readable by its owner
    /// only since it holds password hashes.
    pub fn save(&self, path: &Path) -> Result<(), AccessError> {
        let write_err = |source| AccessError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = toml::to_string_pretty(self).map_err(|e| AccessError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(write_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(write_err)?;
        }
        std::fs::rename(&tmp, path).map_err(write_err)
    }

    /// Adds a user with an argon2id hash of `password`.
    pub fn add_user(&mut self, name: &str, role: Role, password: &str, replace: bool) -> Result<(), AccessError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return Err(AccessError::InvalidUserName);
        }
        match password.chars().count() {
            0 => return Err(AccessError::EmptyPassword),
            n if n < MIN_PASSWORD_CHARS => return Err(AccessError::PasswordTooShort(n)),
            n if n > MAX_PASSWORD_CHARS => return Err(AccessError::PasswordTooLong(n)),
            _ => {}
        }
        if self.users.iter().any(|u| u.name == name) && !replace {
            return Err(AccessError::DuplicateUser(name.to_string()));
        }
        let salt_bytes: [u8; 16] = rand::rng().random();
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AccessError::Hash(e.to_string()))?;
        let password_hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AccessError::Hash(e.to_string()))?
            .to_string();
        self.users.retain(|u| u.name != name);
        self.users.push(User {
            name: name.to_string(),
            role,
            password_hash,
        });
        Ok(())
    }

    /// The user's role when the password matches. Slow on purpose (argon2): call it off
    /// the async threads. An unknown user costs the same argon2 verification (against a
    /// hash no password matches), so that response times do not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Option<Role> {
        let user = self.users.iter().find(|u| u.name == name);
        let stored: &str = match user {
            Some(u) => &u.password_hash,
            None => unknown_user_hash(),
        };
        let hash = PasswordHash::new(stored).ok()?;
        let matches = Argon2::default().verify_password(password.as_bytes(), &hash).is_ok();
        user.filter(|_| matches).map(|u| u.role)
    }
}

/// An argon2id hash with the default parameters (those `add_user` uses) of a random password
/// nobody knows, made once: what an unknown user's password is checked against.
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let secret: [u8; 32] = rand::rng().random();
        let salt: [u8; 16] = rand::rng().random();
        SaltString::encode_b64(&salt)
            .ok()
            .and_then(|salt| Argon2::default().hash_password(&secret, &salt).ok().map(|h| h.to_string()))
            .unwrap_or_default()
    })
}

/// Failed sign-ins, per user name and per client address, and the pauses they earn: after
/// `allowed` failures in a row, sign-ins for that name (or from that address) are refused
/// without checking the password for 1 s, 2 s, 4 s, ... up to `max_pause`. A success clears
/// the name and the address. Keys are bounded in number: past that, the stalest is forgotten.
#[derive(Debug)]
pub struct SignInThrottle {
    allowed: u32,
    max_pause: Duration,
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    paused_until: Option<Instant>,
}

/// Names and addresses the throttle remembers at most.
const MAX_THROTTLE_KEYS: usize = 100_000;

impl SignInThrottle {
    pub fn new(allowed: u32, max_pause: Duration) -> Self {
        Self { allowed: allowed.max(1), max_pause, failures: Mutex::new(HashMap::new()) }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        match self.failures.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// How long sign-ins for any of `keys` are still paused, if they are.
    pub fn paused(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.failures();
        keys.iter()
            .filter_map(|key| failures.get(key)?.paused_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Records a failed sign-in for each of `keys`.
    pub fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut failures = self.failures();
        if failures.len() >= MAX_THROTTLE_KEYS {
            let forget = self.max_pause;
            failures.retain(|_, f| now.duration_since(f.last) < forget);
            if failures.len() >= MAX_THROTTLE_KEYS {
                if let Some(stalest) = failures.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone()) {
                    failures.remove(&stalest);
                }
            }
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures { count: 0, last: now, paused_until: None });
            // A name left alone for a full pause starts again from zero.
            if now.duration_since(entry.last) > self.max_pause.max(Duration::from_secs(1)) * 2 {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            if entry.count >= self.allowed {
                let doublings = (entry.count - self.allowed).min(16);
                let pause = Duration::from_secs(1u64 << doublings).min(self.max_pause);
                entry.paused_until = Some(now + pause);
            }
        }
    }

    /// A successful sign-in clears `keys`.
    pub fn succeeded(&self, keys: &[String]) {
        let mut failures = self.failures();
        for key in keys {
            failures.remove(key);
        }
    }
}

/// A signed-in user, as a token stands for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
}

/// Why a request was not let in. The one check of who calls ([`TokenStore::authenticate`]),
/// shared by every protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthRejection {
    #[error("no authorization header: call Handshake with basic credentials first")]
    Missing,
    #[error("the authorization header is not text")]
    NotText,
    #[error("expected a Bearer token (call Handshake with basic credentials first)")]
    NotBearer,
    #[error("unknown bearer token: call Handshake again")]
    Unknown,
    #[error("bearer token expired: call Handshake again")]
    Expired,
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Unknown,
    Expired,
}

/// Bearer tokens handed out by Handshake, each with its expiry.
#[derive(Debug)]
pub struct TokenStore {
    ttl: Duration,
    tokens: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenStore {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Principal, Instant)>> {
        match self.tokens.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A new random token for `principal`.
    pub fn issue(&self, principal: Principal) -> String {
        let bytes: [u8; 32] = rand::rng().random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut tokens = self.tokens();
        tokens.retain(|_, (_, expires)| *expires > now);
        tokens.insert(token.clone(), (principal, now + self.ttl));
        token
    }

    /// Who an `Authorization` header (`Bearer <token>`) stands for.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Principal, AuthRejection> {
        let header = header.ok_or(AuthRejection::Missing)?;
        let value = std::str::from_utf8(header).map_err(|_| AuthRejection::NotText)?;
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or(AuthRejection::NotBearer)?;
        self.check(token.trim()).map_err(|rejection| match rejection {
            TokenRejection::Unknown => AuthRejection::Unknown,
            TokenRejection::Expired => AuthRejection::Expired,
        })
    }

    pub fn check(&self, token: &str) -> Result<Principal, TokenRejection> {
        let mut tokens = self.tokens();
        match tokens.get(token) {
            None => Err(TokenRejection::Unknown),
            Some((_, expires)) if *expires <= Instant::now() => {
                tokens.remove(token);
                Err(TokenRejection::Expired)
            }
            Some((principal, _)) => Ok(principal.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_is_refused_naming_the_nearest_valid_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cclake.toml");
        std::fs::write(&path, "[server]\nquery_timeout = 30\n").unwrap();
        let message = AccessConfig::load(&path).unwrap_err().to_string();
        assert!(message.contains("`query_timeout`") && message.contains("did you mean `query_timeout_seconds`?"), "{message}");
        std::fs::write(&path, "[servr]\nquery_timeout_seconds = 30\n").unwrap();
        let message = AccessConfig::load(&path).unwrap_err().to_string();
        assert!(message.contains("did you mean `server`?"), "{message}");
        std::fs::write(&path, "[server]\nquery_timeout_seconds = 30\n").unwrap();
        assert_eq!(AccessConfig::load(&path).unwrap().server.query_timeout_seconds, 30);
    }

    #[test]
    fn passwords_shorter_than_the_minimum_are_refused_and_long_passphrases_taken() {
        let mut config = AccessConfig::default();
        for short in ["", "x", "1234567"] {
            assert!(config.add_user("audit", Role::Auditor, short, false).is_err(), "{short:?}");
        }
        config.add_user("audit", Role::Auditor, "12345678", false).unwrap();
        config.add_user("audit", Role::Auditor, &"correct horse battery staple ".repeat(4), true).unwrap();
        assert!(config.add_user("audit", Role::Auditor, &"x".repeat(MAX_PASSWORD_CHARS + 1), true).is_err());
    }

    #[test]
    fn users_are_stored_hashed_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cclake.toml");
        let mut config = AccessConfig::load(&path).unwrap();
        config.add_user("ana", Role::Analyst, "s3cret!!", false).unwrap();
        assert!(matches!(config.add_user("ana", Role::Auditor, "long enough", false), Err(AccessError::DuplicateUser(_))));
        config.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret!!") && text.contains("$argon2id$"), "{text}");
        let config = AccessConfig::load(&path).unwrap();
        assert_eq!(config.verify("ana", "s3cret!!"), Some(Role::Analyst));
        assert_eq!(config.verify("ana", "wrong"), None);
        assert_eq!(config.verify("bob", "s3cret!"), None);
    }

    #[test]
    fn unknown_users_cost_a_real_argon2_verification() {
        // The unknown-user path verifies against a hash made with add_user's parameters; a
        // hash that did not parse would make it return early, and fast.
        let dummy = PasswordHash::new(unknown_user_hash()).unwrap();
        let mut config = AccessConfig::default();
        config.add_user("ana", Role::Analyst, "pw-long-enough", false).unwrap();
        let real = PasswordHash::new(&config.users[0].password_hash).unwrap();
        assert_eq!((dummy.algorithm, dummy.params.to_string()), (real.algorithm, real.params.to_string()));
        assert_eq!(config.verify("nobody", "pw-long-enough"), None);
        assert_eq!(config.verify("ana\nINFO signed in", "pw-long-enough"), None);
    }

    #[test]
    fn failed_sign_ins_pause_the_name_and_the_address_until_a_success() {
        let throttle = SignInThrottle::new(3, Duration::from_secs(30));
        let keys = ["user:ana".to_string(), "peer:127.0.0.1".to_string()];
        for _ in 0..2 {
            throttle.failed(&keys);
            assert_eq!(throttle.paused(&keys), None);
        }
        throttle.failed(&keys);
        let first = throttle.paused(&keys).unwrap();
        assert!(first <= Duration::from_secs(1) && first > Duration::from_millis(500), "{first:?}");
        throttle.failed(&keys);
        assert!(throttle.paused(&keys).unwrap() > Duration::from_secs(1), "the pause doubles");
        for _ in 0..20 {
            throttle.failed(&keys);
        }
        assert!(throttle.paused(&keys).unwrap() <= Duration::from_secs(30), "and stops at the maximum");
        assert_eq!(throttle.paused(&["user:bob".to_string()]), None, "other names are not paused");
        throttle.succeeded(&keys);
        assert_eq!(throttle.paused(&keys), None);
    }

    #[test]
    fn what_a_role_reads_follows_the_tables_sensitivity() {
        assert_eq!(Role::Analyst.hidden_tables(), vec!["call_recordings", "user_contacts", "agent_identities", "access_log"]);
        assert!(Role::Auditor.hidden_tables().is_empty());
    }

    #[test]
    fn tokens_expire() {
        let store = TokenStore::new(Duration::from_millis(0));
        let token = store.issue(Principal { user: "a".into(), role: Role::Auditor });
        assert_eq!(store.check(&token), Err(TokenRejection::Expired));
        assert_eq!(store.check("nope"), Err(TokenRejection::Unknown));
        let store = TokenStore::new(Duration::from_secs(60));
        let token = store.issue(Principal { user: "a".into(), role: Role::Auditor });
        assert_eq!(store.check(&token).unwrap().role, Role::Auditor);
    }

    #[test]
    fn authenticate_names_what_is_wrong_with_the_header() {
        let tokens = TokenStore::new(Duration::from_secs(60));
        let token = tokens.issue(Principal { user: "ana".into(), role: Role::Analyst });
        let header = format!("Bearer {token}");
        assert_eq!(tokens.authenticate(Some(header.as_bytes())).unwrap().user, "ana");
        assert_eq!(tokens.authenticate(Some(format!("bearer  {token} ").as_bytes())).unwrap().role, Role::Analyst);
        assert_eq!(tokens.authenticate(None), Err(AuthRejection::Missing));
        assert_eq!(tokens.authenticate(Some(b"Bearer \xff")), Err(AuthRejection::NotText));
        assert_eq!(tokens.authenticate(Some(b"Basic YW5hOnB3")), Err(AuthRejection::NotBearer));
        assert_eq!(tokens.authenticate(Some(b"Bearer 00ff")), Err(AuthRejection::Unknown));
        let expired = TokenStore::new(Duration::ZERO);
        let token = expired.issue(Principal { user: "ana".into(), role: Role::Analyst });
        assert_eq!(expired.authenticate(Some(format!("Bearer {token}").as_bytes())), Err(AuthRejection::Expired));
    }
}
