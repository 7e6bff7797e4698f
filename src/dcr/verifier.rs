//! [`ProxyTokenVerifier`]: our access token → grant → A3's access token → its verified claims.

use std::sync::Arc;
use std::time::Duration;

use super::grant::{FreshError, Grant, fresh_upstream, grant_named_by};
use super::store::{Namespace, StoreError};
use super::{Inner, crypto};
use crate::claims::Claims;
use crate::verifier::{TokenVerifier, VerifyError};

const RETRY: Duration = Duration::from_secs(5);

/// Verifies the access tokens the bridge issued to MCP hosts.
///
/// A token not shaped like ours (`a3mcp_at_…`) is [`VerifyError::Unrecognized`], so
/// `proxy.or(a3_verifier)` hands A3's JWTs to the verifier of A3's tokens; a token shaped like
/// ours is never passed on. Our refresh tokens (`a3mcp_rt_…`) and codes are not access tokens and
/// are refused. A known token resolves to its grant; A3's access token behind it is refreshed when
/// it has expired (once, for all concurrent requests) and verified with the bridge's verifier of
/// A3's tokens (by default a [`JwtVerifier`](crate::jwt::JwtVerifier)); its claims are the result,
/// [with the client id](Claims::with_client_id) of the registered host the token was issued to,
/// so that each host of a user is its own [principal](Claims::principal).
///
/// Get it from [`DcrBridge::token_verifier`](super::DcrBridge::token_verifier) (combined with
/// the verifier of A3's tokens) or [`DcrBridge::proxy_verifier`](super::DcrBridge::proxy_verifier).
///
/// ```
/// use a3_mcp_auth::{A3Config, TokenVerifier};
/// use a3_mcp_auth::verifier::VerifyError;
/// use a3_mcp_auth::dcr::DcrBridge;
/// use a3_mcp_auth::dcr::store::MemoryStore;
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
        let unavailable = |e: StoreError| {
            tracing::error!(error = %e, "DCR store failure");
            VerifyError::Unavailable { retry_after: RETRY }
        };
        let unknown = || VerifyError::invalid("unknown, expired or revoked token");
        let named = grant_named_by(inner, token, crypto::ACCESS_TOKEN_PREFIX, Namespace::AccessToken)
            .await
            .map_err(unavailable)?
            .ok_or_else(unknown)?;
        let grant: Grant = inner
            .store
            .get_json(Namespace::Grant, &named.grant_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(unknown)?;
        // A token of an earlier version was found by its hash; ours must be one of the grant's.
        if named.legacy.is_none()
            && !grant.has_access_token(&crate::oauth::sha256_b64url(token), crate::oauth::unix_now())
        {
            return Err(unknown());
        }
        let client_id = grant.client_id.clone();
        let (_, tokens) = fresh_upstream(inner, grant).await.map_err(|e| match e {
            FreshError::Gone => VerifyError::invalid("the authorization expired; sign in again"),
            FreshError::Unavailable => VerifyError::Unavailable { retry_after: RETRY },
        })?;
        // The A3 token names the bridge's own A3 client; the token presented is the host's.
        let claims = inner.a3_verifier.verify(&tokens.access_token).await?;
        Ok(claims.with_client_id(client_id))
    }
}
