//! Signing in: Basic credentials checked against the users' argon2 hashes (at most one check
//! per core at once, a bounded queue of waiting sign-ins), failed sign-ins pausing the name and
//! the address, and bearer tokens for every later call.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow_flight::HandshakeRequest;
use base64::Engine;
use tonic::{Request, Status, Streaming};
use tracing::{info, warn};

use crate::access::{Principal, Role};
use crate::server::statements::BASE64_ANY_PADDING;

use super::responses::shown;
use super::service::CclakeFlightSql;

/// Sign-ins that may wait for a password check; more are refused with UNAVAILABLE.
pub(super) const MAX_WAITING_SIGN_INS: usize = 64;

/// What failed sign-ins are counted against: the user name and the client's address.
fn throttle_keys(user: &str, peer: Option<std::net::SocketAddr>) -> Vec<String> {
    // Valid names have at most 64 characters: longer ones need not be kept whole.
    let name: String = user.chars().take(65).collect();
    let mut keys = vec![format!("user:{name}")];
    if let Some(peer) = peer {
        keys.push(format!("peer:{}", peer.ip()));
    }
    keys
}

impl CclakeFlightSql {
    /// Checks the request's credentials and returns the bearer token the client uses next:
    /// a new one for Basic credentials, the same one for a valid Bearer token (JDBC with
    /// `token=` still calls Handshake).
    pub(super) async fn sign_in(&self, request: &Request<Streaming<HandshakeRequest>>) -> Result<String, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("no authorization header: send basic credentials"))?
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization header is not text"))?
            .to_string();
        let token = if let Some(encoded) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) {
            let decoded = BASE64_ANY_PADDING
                .decode(encoded.trim())
                .map_err(|_| Status::unauthenticated("basic credentials are not valid base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| Status::unauthenticated("basic credentials are not UTF-8"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| Status::unauthenticated("basic credentials need user:password"))?;
            let keys = throttle_keys(user, request.remote_addr());
            let role = self.verify_password(user, password, &keys).await?;
            let Some(role) = role else {
                self.throttle.failed(&keys);
                warn!(user = %shown(user), "authentication failed");
                return Err(Status::unauthenticated(format!("wrong user name or password for '{}'", shown(user))));
            };
            self.throttle.succeeded(&keys);
            let user = user.to_string();
            info!(user = %shown(&user), role = role.as_str(), "signed in");
            self.tokens.issue(Principal { user, role })
        } else if let Some(token) = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")) {
            // JDBC with `token=` still calls Handshake: a valid token is answered as is.
            self.tokens.authenticate(Some(header.as_bytes())).map_err(crate::server::auth::rejected)?;
            token.trim().to_string()
        } else {
            return Err(Status::unauthenticated("expected Basic or Bearer authorization"));
        };
        Ok(token)
    }

    /// Checks a password off the async threads, at most as many at once as there are cores
    /// (each argon2 check takes ~19 MB and a core for tens of milliseconds); past
    /// [`MAX_WAITING_SIGN_INS`] waiting, a sign-in is refused at once.
    /// Sign-ins for a paused name or address are refused without a check, before waiting
    /// and again after (failures that came in meanwhile may have paused it).
    async fn verify_password(&self, user: &str, password: &str, keys: &[String]) -> Result<Option<Role>, Status> {
        let paused = || {
            self.throttle.paused(keys).map(|wait| {
                warn!(user = %shown(user), "sign-in refused: paused after failed sign-ins");
                Status::unavailable(format!(
                    "too many failed sign-ins for '{}' or from this address: retry in {} s",
                    shown(user),
                    wait.as_secs() + 1
                ))
            })
        };
        if let Some(refusal) = paused() {
            return Err(refusal);
        }
        let busy = || Status::unavailable("the server is busy checking sign-ins: retry shortly");
        let waiting = self.waiting_sign_ins.fetch_add(1, Ordering::SeqCst);
        let permit = if waiting >= MAX_WAITING_SIGN_INS {
            None
        } else {
            Arc::clone(&self.verifications).acquire_owned().await.ok()
        };
        self.waiting_sign_ins.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.ok_or_else(busy)?;
        if let Some(refusal) = paused() {
            return Err(refusal);
        }
        let access = Arc::clone(&self.access);
        let (user, password) = (user.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            access.verify(&user, &password)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))
    }

}
