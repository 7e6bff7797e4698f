//! [`ProxyTokenVerifier`]: our access token → grant → A3's access token → its verified claims.

use std::sync::Arc;
use std::time::Duration;

use super::upstream::{UpstreamError, UpstreamTokens};
use super::{Grant, Inner, Namespace, TokenEntry, crypto};
use crate::claims::Claims;
use crate::oauth::unix_now;
use crate::verifier::{TokenVerifier, VerifyError};

const RETRY: Duration = Duration::from_secs(5);

/// Verifies the access tokens the bridge issued to MCP hosts.
///
/// A token not shaped like ours (`a3mcp_at_…`) is [`VerifyError::Unrecognized`], so
/// `proxy.or(jwt_verifier)` hands A3's JWTs to the JWT verifier; a token shaped like ours is
/// never passed on. Our refresh tokens (`a3mcp_rt_…`) are not access tokens and are refused.
/// A known token resolves to its grant; A3's access token behind it is refreshed when it has
/// expired (once, for all concurrent requests) and verified with the
/// [`JwtVerifier`](crate::JwtVerifier); its claims are the result.
///
/// Get it from [`DcrBridge::token_verifier`](super::DcrBridge::token_verifier) (combined with
/// the JWT verifier) or [`DcrBridge::proxy_verifier`](super::DcrBridge::proxy_verifier).
///
/// ```
/// use a3_mcp_auth::{A3Config, TokenVerifier};
/// use a3_mcp_auth::verifier::VerifyError;
/// use a3_mcp_auth::dcr::{DcrBridge, MemoryStore};
/// use a3_mcp_auth::testing::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let resource = "http://127.0.0.1:8000/mcp";
/// let config = A3Config::builder().issuer_url(issuer.url()).resource_uri(resource)
///     .client("proxy", "secret").build().unwrap();
/// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
///
/// // A3 tokens for this resource still work through the combined verifier...
/// let a3_token = issuer.token(resource).subject("m2m").sign();
/// assert!(bridge.token_verifier().verify(&a3_token).await.is_ok());
/// // ...but the proxy verifier alone does not claim them,
/// assert!(matches!(bridge.proxy_verifier().verify(&a3_token).await, Err(VerifyError::Unrecognized)));
/// // and unknown tokens of ours are refused.
/// assert!(matches!(bridge.token_verifier().verify("a3mcp_at_unknown").await, Err(VerifyError::Invalid(_))));
/// # }
/// ```
#[derive(Clone)]
pub struct ProxyTokenVerifier {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ProxyTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyTokenVerifier")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier for ProxyTokenVerifier {
    async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        if token.starts_with(crypto::REFRESH_TOKEN_PREFIX) || token.starts_with(crypto::CODE_PREFIX) {
            return Err(VerifyError::invalid("not an access token"));
        }
        if !token.starts_with(crypto::ACCESS_TOKEN_PREFIX) {
            return Err(VerifyError::Unrecognized);
        }
        let inner = &self.inner;
        let unavailable = |e: super::StoreError| {
            tracing::error!(error = %e, "DCR store failure");
            VerifyError::Unavailable { retry_after: RETRY }
        };
        let entry: TokenEntry = inner
            .get_json(Namespace::AccessToken, &crate::oauth::sha256_b64url(token))
            .await
            .map_err(unavailable)?
            .ok_or_else(|| VerifyError::invalid("unknown, expired or revoked token"))?;
        let grant: Grant = inner
            .get_json(Namespace::Grant, &entry.grant_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| VerifyError::invalid("the authorization was revoked"))?;
        let (_, tokens) = fresh_upstream(inner, grant).await.map_err(|e| match e {
            FreshError::Gone => VerifyError::invalid("the authorization expired; sign in again"),
            FreshError::Unavailable => VerifyError::Unavailable { retry_after: RETRY },
        })?;
        inner.jwt.verify(&tokens.access_token).await
    }
}

pub(crate) enum FreshError {
    /// The grant cannot be used any more (A3 refused the refresh, or nothing to refresh with).
    Gone,
    /// A3 or the store is unavailable right now.
    Unavailable,
}

/// The grant's A3 tokens, refreshed first if the access token has (nearly) expired. Concurrent
/// callers for one grant wait for a single refresh and then re-read the grant.
pub(crate) async fn fresh_upstream(
    inner: &Inner,
    grant: Grant,
) -> Result<(Grant, UpstreamTokens), FreshError> {
    let tokens = grant.open(&inner.keys).ok_or(FreshError::Gone)?;
    if !tokens.refresh_due(unix_now()) {
        return Ok((grant, tokens));
    }
    if tokens.refresh_token.is_none() {
        return Err(FreshError::Gone);
    }
    let before = tokens.access_token;
    let _guard = inner
        .lock_grant(&grant.id)
        .await
        .map_err(|_| FreshError::Unavailable)?;
    fresh_upstream_locked(inner, &grant.id, Some(&before)).await
}

/// [`fresh_upstream`] for a caller that holds the grant's lock: re-reads the grant and refreshes
/// A3's tokens if they have (nearly) expired and nobody has replaced `before` in the meantime.
pub(crate) async fn fresh_upstream_locked(
    inner: &Inner,
    grant_id: &str,
    before: Option<&str>,
) -> Result<(Grant, UpstreamTokens), FreshError> {
    // Someone else may have refreshed (or revoked) while we waited.
    let mut grant: Grant = match inner.get_json(Namespace::Grant, grant_id).await {
        Ok(Some(g)) => g,
        Ok(None) => return Err(FreshError::Gone),
        Err(_) => return Err(FreshError::Unavailable),
    };
    let tokens = grant.open(&inner.keys).ok_or(FreshError::Gone)?;
    if before.is_some_and(|b| tokens.access_token != b) || !tokens.refresh_due(unix_now()) {
        return Ok((grant, tokens));
    }
    let Some(refresh_token) = tokens.refresh_token.as_deref() else {
        return Err(FreshError::Gone);
    };
    match inner.upstream.refresh(refresh_token, &grant.resource).await {
        Ok(mut fresh) => {
            match TokenVerifier::verify(&inner.jwt, &fresh.access_token).await {
                Ok(claims) if claims.subject() == grant.subject.as_deref() => {
                    if let Some(exp) = claims.expires_at() {
                        fresh.expires_at = fresh.expires_at.min(exp);
                    }
                }
                // A3's keys are unreachable right now: keep the tokens (A3 consumed the old
                // refresh token); every request verifies the access token again anyway.
                Err(VerifyError::Unavailable { .. }) => {}
                Ok(_) | Err(_) => {
                    tracing::warn!(
                        client_id = %grant.client_id,
                        "A3 refreshed to a token this resource does not accept, or for another user; ending the grant"
                    );
                    let _ = inner.store.delete(Namespace::Grant, &grant.id).await;
                    let upstream = inner.upstream.clone();
                    tokio::spawn(async move { upstream.revoke(&fresh).await });
                    return Err(FreshError::Gone);
                }
            }
            grant.seal(&inner.keys, &fresh);
            inner
                .put_json(
                    Namespace::Grant,
                    &grant.id,
                    &grant,
                    Some(inner.limits.refresh_token_ttl),
                )
                .await
                .map_err(|_| FreshError::Unavailable)?;
            tracing::debug!(client_id = %grant.client_id, "refreshed A3 tokens");
            Ok((grant, fresh))
        }
        Err(UpstreamError::Rejected(why)) => {
            tracing::info!(%why, client_id = %grant.client_id, "A3 refused to refresh; ending the grant");
            let _ = inner.store.delete(Namespace::Grant, &grant.id).await;
            Err(FreshError::Gone)
        }
        Err(UpstreamError::Unavailable(why)) => {
            tracing::warn!(%why, "refreshing A3 tokens failed");
            Err(FreshError::Unavailable)
        }
    }
}
