//! The seam between the bearer layer and whatever knows how to check a token.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::claims::Claims;

/// Resolves a bearer token to the verified [`Claims`] it stands for.
///
/// [`JwtVerifier`](crate::JwtVerifier) checks A3's RS256 JWTs; the DCR bridge resolves its own
/// opaque tokens to the A3 token behind them. [`BearerAuthLayer`](crate::BearerAuthLayer) works
/// with either, or with both through [`TokenVerifier::or`].
///
/// ```
/// use a3_mcp_auth::{Claims, TokenVerifier};
/// use a3_mcp_auth::verifier::VerifyError;
/// use serde_json::json;
///
/// /// Accepts one fixed token: for a test double, never for production.
/// struct Fixed;
///
/// impl TokenVerifier for Fixed {
///     async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
///         if token == "let-me-in" {
///             Ok(Claims::from_value(json!({"sub": "tester", "scope": "mcp:call"})).unwrap())
///         } else {
///             Err(VerifyError::invalid("unknown token"))
///         }
///     }
/// }
///
/// # tokio_test_block_on(async {
/// assert!(Fixed.verify("let-me-in").await.is_ok());
/// assert!(Fixed.verify("nope").await.is_err());
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token` and returns its claims.
    ///
    /// Implementations must not put the token, or any part of it, into the error.
    fn verify(&self, token: &str) -> impl Future<Output = Result<Claims, VerifyError>> + Send;

    /// Tries `self`, then `other` when `self` does not recognise the token
    /// ([`VerifyError::Unrecognized`]). Any other error from `self` is final, so a token one
    /// verifier rejects is never handed to the other.
    fn or<V: TokenVerifier>(self, other: V) -> Or<Self, V>
    where
        Self: Sized,
    {
        Or {
            first: self,
            second: other,
        }
    }
}

impl<V: TokenVerifier> TokenVerifier for Arc<V> {
    fn verify(&self, token: &str) -> impl Future<Output = Result<Claims, VerifyError>> + Send {
        (**self).verify(token)
    }
}

/// Two verifiers, tried in order: the second only when the first does not recognise the token.
/// Built by [`TokenVerifier::or`].
///
/// ```
/// use a3_mcp_auth::TokenVerifier;
/// use a3_mcp_auth::claims::Claims;
/// use a3_mcp_auth::verifier::{Or, VerifyError};
///
/// struct Prefixed(&'static str);
/// impl TokenVerifier for Prefixed {
///     async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
///         match token.strip_prefix(self.0) {
///             Some(sub) => Ok(Claims::from_value(serde_json::json!({"sub": sub})).unwrap()),
///             None => Err(VerifyError::Unrecognized),
///         }
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let both: Or<Prefixed, Prefixed> = Prefixed("a:").or(Prefixed("b:"));
/// assert_eq!(both.verify("b:bob").await.unwrap().subject(), Some("bob"));
/// assert!(both.verify("c:carol").await.is_err());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A: TokenVerifier, B: TokenVerifier> TokenVerifier for Or<A, B> {
    async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        match self.first.verify(token).await {
            Err(VerifyError::Unrecognized) => self.second.verify(token).await,
            other => other,
        }
    }
}

/// Any [`TokenVerifier`] as one type, cheap to clone: for code that holds a verifier chosen at
/// run time. [`TokenVerifier::verify`] returns `impl Future`, so `dyn TokenVerifier` is not
/// possible; this boxes each verification's future instead.
///
/// The DCR bridge holds its verifier of A3's tokens this way, so that any verifier can be given
/// to it ([`DcrBridgeBuilder::a3_verifier`](crate::dcr::DcrBridgeBuilder::a3_verifier)).
///
/// ```
/// use a3_mcp_auth::{Claims, TokenVerifier};
/// use a3_mcp_auth::verifier::{DynVerifier, VerifyError};
///
/// struct Prefixed(&'static str);
/// impl TokenVerifier for Prefixed {
///     async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
///         match token.strip_prefix(self.0) {
///             Some(sub) => Ok(Claims::from_value(serde_json::json!({"sub": sub})).unwrap()),
///             None => Err(VerifyError::Unrecognized),
///         }
///     }
/// }
///
/// // Which verifier to use is decided at run time (e.g. by configuration); one type holds either.
/// let staging = std::env::var_os("STAGING").is_some();
/// let verifier = if staging {
///     DynVerifier::new(Prefixed("staging:").or(Prefixed("test:")))
/// } else {
///     DynVerifier::new(Prefixed("test:"))
/// };
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(verifier.verify("test:alice").await.unwrap().subject(), Some("alice"));
/// # });
/// ```
#[derive(Clone)]
pub struct DynVerifier(Arc<dyn VerifyDyn>);

impl DynVerifier {
    /// Wraps `verifier`.
    pub fn new(verifier: impl TokenVerifier) -> Self {
        DynVerifier(Arc::new(verifier))
    }
}

impl fmt::Debug for DynVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier for DynVerifier {
    async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        self.0.verify_boxed(token).await
    }
}

/// The future of one verification, boxed.
type VerifyFuture<'a> = Pin<Box<dyn Future<Output = Result<Claims, VerifyError>> + Send + 'a>>;

/// [`TokenVerifier`] in a form that can be a trait object (the future is boxed), implemented for
/// every verifier.
trait VerifyDyn: Send + Sync + 'static {
    fn verify_boxed<'a>(&'a self, token: &'a str) -> VerifyFuture<'a>;
}

impl<V: TokenVerifier> VerifyDyn for V {
    fn verify_boxed<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.verify(token))
    }
}

/// Why a token was not accepted.
///
/// Descriptions are fixed phrases chosen by the verifier; they never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not valid for this resource (401 `invalid_token`).
    #[error("invalid token: {0}")]
    Invalid(Cow<'static, str>),
    /// The token is not of a kind this verifier handles; see [`TokenVerifier::or`].
    /// Answered like [`VerifyError::Invalid`] when no other verifier takes it.
    #[error("invalid token: not a token this server issued or accepts")]
    Unrecognized,
    /// The token could not be checked right now, e.g. the issuer's keys cannot be fetched
    /// (503 with `Retry-After`).
    #[error("token keys unavailable, retry after {retry_after:?}")]
    Unavailable {
        /// When a retry may succeed.
        retry_after: Duration,
    },
}

impl VerifyError {
    /// An [`VerifyError::Invalid`] with a fixed description.
    pub fn invalid(description: impl Into<Cow<'static, str>>) -> Self {
        VerifyError::Invalid(description.into())
    }
}
