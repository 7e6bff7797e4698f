//! A grant: one user's authorization of one registered client, with A3's tokens sealed inside;
//! what our tokens map to; the lock that serialises everything that rewrites a grant; the
//! refresh of A3's tokens; revocation.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Inner;
use super::crypto::Keys;
use super::store::{Namespace, Store, StoreError};
use super::upstream::{UpstreamError, UpstreamTokens};
use crate::oauth::unix_now;
use crate::verifier::{TokenVerifier, VerifyError};

/// A grant: one user's authorization of one registered client, holding A3's tokens sealed.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub id: String,
    pub client_id: String,
    pub subject: Option<String>,
    pub scope: String,
    pub resource: String,
    /// `UpstreamTokens` as JSON, sealed with the grant id as associated data.
    pub upstream: Vec<u8>,
}

impl Grant {
    pub(crate) fn open(&self, keys: &Keys) -> Option<UpstreamTokens> {
        serde_json::from_slice(&keys.open(self.id.as_bytes(), &self.upstream)?).ok()
    }

    pub(crate) fn seal(&mut self, keys: &Keys, tokens: &UpstreamTokens) {
        self.upstream = keys.seal(
            self.id.as_bytes(),
            &serde_json::to_vec(tokens).expect("tokens serialize"),
        );
    }
}

/// What our access and refresh token hashes map to.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct TokenEntry {
    pub grant_id: String,
    pub client_id: String,
    /// Written by earlier versions for a rotated refresh token (without a successor).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotated: bool,
    /// Refresh tokens: when the token itself expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Refresh tokens: when it was rotated. A rotated token is kept until its own expiry, so
    /// that a use after the grace period is recognised as reuse and ends the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<u64>,
    /// Refresh tokens: the successor issued at rotation, sealed (associated data: this
    /// token's hash), returned again to a retry within the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<Vec<u8>>,
}

impl TokenEntry {
    pub(crate) fn new(grant_id: &str, client_id: &str) -> Self {
        TokenEntry {
            grant_id: grant_id.to_owned(),
            client_id: client_id.to_owned(),
            rotated: false,
            expires_at: None,
            rotated_at: None,
            successor: None,
        }
    }
}

/// How long a grant's lock in a shared store lives at most: longer than one upstream refresh
/// (whose HTTP timeout is 15 s), so that a slow refresh is not duplicated by another replica.
const GRANT_LOCK_TTL: Duration = Duration::from_secs(30);
/// How long to wait for another replica's refresh or revocation of the same grant.
const GRANT_LOCK_WAIT: Duration = Duration::from_secs(20);

/// Held while one grant is refreshed, rewritten or revoked: the per-process mutex and the store's
/// lock ([`Store::lock`], across replicas). Released on drop.
pub(crate) struct GrantLock {
    store: Arc<dyn Store>,
    name: String,
    token: String,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for GrantLock {
    fn drop(&mut self) {
        if self.token.is_empty() {
            return; // a single-process store: the mutex was the lock
        }
        let (store, name, token) = (
            self.store.clone(),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.token),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.unlock(&name, &token).await {
                    tracing::warn!(error = %e, "releasing a grant lock failed; it expires by itself");
                }
            });
        }
    }
}

/// Serialises everything that rewrites or deletes one grant (upstream refresh, our token
/// issuance and rotation, revocation): within this process by a mutex, across replicas by the
/// store's lock ([`Store::lock`]), waiting up to [`GRANT_LOCK_WAIT`] for another holder.
pub(crate) async fn lock_grant(inner: &Inner, grant_id: &str) -> Result<GrantLock, StoreError> {
    let local = inner
        .grant_locks
        .get_with(grant_id.to_owned(), || Arc::new(tokio::sync::Mutex::new(())))
        .lock_owned()
        .await;
    let name = format!("grant:{grant_id}");
    let deadline = tokio::time::Instant::now() + GRANT_LOCK_WAIT;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(token) = inner.store.lock(&name, GRANT_LOCK_TTL).await? {
            return Ok(GrantLock {
                store: inner.store.clone(),
                name,
                token,
                _local: local,
            });
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(StoreError("another replica holds the grant's lock".into()));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Why a grant's A3 tokens could not be made fresh.
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
    let _guard = lock_grant(inner, &grant.id)
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
    let mut grant: Grant = match inner.store.get_json(Namespace::Grant, grant_id).await {
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
            match inner.a3_verifier.verify(&fresh.access_token).await {
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
                .store
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

/// Deletes a grant (every token of it stops working) and revokes A3's tokens in the background.
pub(crate) async fn revoke_grant(inner: &Inner, grant_id: &str) {
    // Serialised with refreshes of this grant, so an in-flight refresh cannot store it again.
    // Without the lock (store trouble), deleting the grant still ends it everywhere.
    let _guard = lock_grant(inner, grant_id)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "revoking a grant without its lock"))
        .ok();
    revoke_grant_locked(inner, grant_id).await;
}

/// [`revoke_grant`] for a caller that holds the grant's lock.
pub(crate) async fn revoke_grant_locked(inner: &Inner, grant_id: &str) {
    match inner.store.take_json::<Grant>(Namespace::Grant, grant_id).await {
        Ok(Some(grant)) => {
            if let Some(tokens) = grant.open(&inner.keys) {
                let upstream = inner.upstream.clone();
                tokio::spawn(async move { upstream.revoke(&tokens).await });
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "revoking a grant failed"),
    }
}
