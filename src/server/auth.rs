//! Who calls, checked once for every RPC: a tower layer in front of the gRPC services reads
//! the `Authorization` header ([`TokenStore::authenticate`]) and puts the [`Principal`] in
//! the request's extensions, where the RPCs find it ([`principal`]). A request without a
//! valid token never reaches a service; only the sign-in RPC (Handshake) passes without one.
//! The same check serves any other protocol the server adds.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::{Request, Status};

use crate::access::{AuthRejection, Principal, TokenStore};

/// The RPC that signs in: the one that runs without a token.
const SIGN_IN_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// The signed-in caller of a request the layer let in.
pub(crate) fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| rejected(AuthRejection::Missing))
}

pub(crate) fn rejected(rejection: AuthRejection) -> Status {
    Status::unauthenticated(rejection.to_string())
}

#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    tokens: Arc<TokenStore>,
}

impl AuthLayer {
    pub(crate) fn new(tokens: Arc<TokenStore>) -> Self {
        Self { tokens }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated { inner, tokens: Arc::clone(&self.tokens) }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Authenticated<S> {
    inner: S,
    tokens: Arc<TokenStore>,
}

impl<S, B> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SIGN_IN_PATH {
            let header = request.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
            match self.tokens.authenticate(header) {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                }
                Err(rejection) => {
                    let response = rejected(rejection).into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        // The service that was made ready serves this call; its clone waits for the next.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        Box::pin(ready.call(request))
    }
}
