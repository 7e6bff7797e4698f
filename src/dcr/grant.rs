//! A grant: one user's authorization of one registered client, with A3's tokens sealed inside;
//! what our tokens map to; the lock that serialises everything that rewrites a grant; writing and
//! deleting a grant with its index entries (by client and by user), which decide how long its
//! client stays registered and bound the grants of one user; the refresh of A3's tokens;
//! revocation.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Inner;
use super::client_lifetime;
use super::crypto::Keys;
use super::store::{Index, Namespace, Store, StoreError, subject_key};
use super::upstream::{UpstreamError, UpstreamTokens};
use crate::audit::{self, GrantRef, Revocation};
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
    /// Where the host received the code (absent in grants written by earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

impl Grant {
    /// Which install of a client the grant is for: the client and its redirect URI, a loopback
    /// one without its port (a host moves to another port when its usual one is busy). Every
    /// install of a host identified by a metadata document shares one client id.
    fn install(&self) -> (&str, Option<String>) {
        let redirect = self
            .redirect_uri
            .as_deref()
            .map(|r| super::register::loopback_without_port(r).unwrap_or_else(|| r.to_owned()));
        (&self.client_id, redirect)
    }
}

impl Grant {
    pub(crate) fn open(&self, keys: &Keys) -> Option<UpstreamTokens> {
        serde_json::from_slice(&keys.open(self.id.as_bytes(), &self.upstream)?).ok()
    }

    /// The grant as audit events name it.
    pub(crate) fn audited(&self) -> GrantRef<'_> {
        GrantRef {
            subject: self.subject.as_deref(),
            client_id: &self.client_id,
            grant_id: &self.id,
        }
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

/// How long a lock in a shared store lives at most: longer than one upstream refresh (whose HTTP
/// timeout is 15 s), so that a slow refresh is not duplicated by another replica.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long to wait for another replica's refresh or revocation of the same grant.
const LOCK_WAIT: Duration = Duration::from_secs(20);

/// Held while one grant (or one client's lifetime) is rewritten: the per-process mutex and the
/// store's lock ([`Store::lock`], across replicas). Released on drop.
pub(crate) struct StoreLock {
    store: Arc<dyn Store>,
    name: String,
    token: String,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for StoreLock {
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
/// store's lock ([`Store::lock`]), waiting up to [`LOCK_WAIT`] for another holder.
pub(crate) async fn lock_grant(inner: &Inner, grant_id: &str) -> Result<StoreLock, StoreError> {
    lock(inner, format!("grant:{grant_id}")).await
}

/// The lock `name`: taken inside a grant's lock, never the other way round.
pub(crate) async fn lock(inner: &Inner, name: String) -> Result<StoreLock, StoreError> {
    let local = inner
        .locks
        .get_with(name.clone(), || Arc::new(tokio::sync::Mutex::new(())))
        .lock_owned()
        .await;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(token) = inner.store.lock(&name, LOCK_TTL).await? {
            return Ok(StoreLock {
                store: inner.store.clone(),
                name,
                token,
                _local: local,
            });
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(StoreError(format!("another replica holds the lock {name}")));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Writes `grant` (its JSON, `raw`) to expire at `expires_at`, with its index entries, and keeps
/// its client registered as long as its grants plus the grace. The caller holds the grant's
/// lock, or the grant is new. The index entries are written first: a failure part-way leaves an
/// entry that keeps the client a little longer, never a grant that outlives its client.
pub(crate) async fn put_grant(
    inner: &Inner,
    grant: &Grant,
    raw: Vec<u8>,
    expires_at: u64,
) -> Result<(), StoreError> {
    let store = &inner.store;
    store
        .index_put(Index::GrantsByClient, &grant.client_id, &grant.id, expires_at)
        .await?;
    if let Some(subject) = &grant.subject {
        store
            .index_put(
                Index::GrantsBySubject,
                &subject_key(subject),
                &grant.id,
                expires_at,
            )
            .await?;
    }
    store
        .put(Namespace::Grant, &grant.id, raw, Some(expires_at))
        .await?;
    client_lifetime::settle(inner, &grant.client_id).await
}

/// [`put_grant`] of `grant` for `ttl` from now.
pub(crate) async fn put_grant_for(inner: &Inner, grant: &Grant, ttl: Duration) -> Result<(), StoreError> {
    let raw = serde_json::to_vec(grant).map_err(|e| StoreError(e.to_string()))?;
    put_grant(inner, grant, raw, crate::oauth::expiry_after(ttl)).await
}

/// Stores a grant just created at the callback (for `ttl`, until its code is redeemed); it
/// replaces the user's grant to the same client and redirect URI, if any (revoked). Then keeps
/// its user within [`max_grants_per_user`](super::DcrBridgeBuilder::max_grants_per_user) by
/// revoking the user's least recently used other grants.
pub(crate) async fn store_new_grant(inner: &Inner, grant: &Grant, ttl: Duration) -> Result<(), StoreError> {
    put_grant_for(inner, grant, ttl).await?;
    let Some(subject) = &grant.subject else {
        return Ok(());
    };
    let held = inner
        .store
        .index_members(Index::GrantsBySubject, &subject_key(subject))
        .await?;
    let mut others = Vec::with_capacity(held.len());
    for entry in held.iter().filter(|e| e.member != grant.id) {
        let replaced = match inner
            .store
            .get_json::<Grant>(Namespace::Grant, &entry.member)
            .await?
        {
            Some(old) => old.install() == grant.install(),
            None => false,
        };
        if replaced {
            tracing::info!(client_id = %grant.client_id, "a new sign-in replaces the user's grant to the same client and redirect URI");
            revoke_grant(inner, &entry.member, Revocation::Replaced).await;
        } else {
            others.push(entry);
        }
    }
    let excess = (others.len() + 1).saturating_sub(inner.limits.max_grants_per_user);
    // Soonest expiry first: the grant used longest ago (each use pushes its expiry out).
    for old in others.into_iter().take(excess) {
        tracing::info!(
            client_id = %grant.client_id,
            "a user holds more grants than allowed; revoking their least recently used one"
        );
        revoke_grant(inner, &old.member, Revocation::UserGrantLimit).await;
    }
    Ok(())
}

/// After `grant`'s entry was deleted (for `reason`, audited here): its index entries go, and its
/// client is kept only as long as its other grants (plus the grace). Failures are logged: the
/// entries expire anyway.
async fn grant_deleted(inner: &Inner, grant: &Grant, reason: Revocation) {
    audit::grant_revoked(grant.audited(), reason);
    let store = &inner.store;
    let unindexed = async {
        store
            .index_remove(Index::GrantsByClient, &grant.client_id, &grant.id)
            .await?;
        if let Some(subject) = &grant.subject {
            store
                .index_remove(Index::GrantsBySubject, &subject_key(subject), &grant.id)
                .await?;
        }
        client_lifetime::settle(inner, &grant.client_id).await
    };
    if let Err(e) = unindexed.await {
        tracing::warn!(error = %e, "updating the indexes of a deleted grant failed; they expire by themselves");
    }
}

/// Deletes a grant whose lock the caller holds.
async fn delete_grant(inner: &Inner, grant: &Grant, reason: Revocation) {
    let _ = inner.store.delete(Namespace::Grant, &grant.id).await;
    grant_deleted(inner, grant, reason).await;
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
                    delete_grant(inner, &grant, Revocation::UpstreamTokenRejected).await;
                    let upstream = inner.upstream.clone();
                    tokio::spawn(async move { upstream.revoke(&fresh).await });
                    return Err(FreshError::Gone);
                }
            }
            grant.seal(&inner.keys, &fresh);
            put_grant_for(inner, &grant, inner.limits.refresh_token_ttl)
                .await
                .map_err(|_| FreshError::Unavailable)?;
            tracing::debug!(client_id = %grant.client_id, "refreshed A3 tokens");
            Ok((grant, fresh))
        }
        Err(UpstreamError::Rejected(why)) => {
            tracing::info!(%why, client_id = %grant.client_id, "A3 refused to refresh; ending the grant");
            delete_grant(inner, &grant, Revocation::UpstreamRefused).await;
            Err(FreshError::Gone)
        }
        Err(UpstreamError::Unavailable(why)) => {
            tracing::warn!(%why, "refreshing A3 tokens failed");
            Err(FreshError::Unavailable)
        }
    }
}

/// Deletes a grant (every token of it stops working) and revokes A3's tokens in the background;
/// `reason` goes into the audit event.
pub(crate) async fn revoke_grant(inner: &Inner, grant_id: &str, reason: Revocation) {
    // Serialised with refreshes of this grant, so an in-flight refresh cannot store it again.
    // Without the lock (store trouble), deleting the grant still ends it everywhere.
    let _guard = lock_grant(inner, grant_id)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "revoking a grant without its lock"))
        .ok();
    revoke_grant_locked(inner, grant_id, reason).await;
}

/// [`revoke_grant`] for a caller that holds the grant's lock.
pub(crate) async fn revoke_grant_locked(inner: &Inner, grant_id: &str, reason: Revocation) {
    match inner.store.take_json::<Grant>(Namespace::Grant, grant_id).await {
        Ok(Some(grant)) => {
            if let Some(tokens) = grant.open(&inner.keys) {
                let upstream = inner.upstream.clone();
                tokio::spawn(async move { upstream.revoke(&tokens).await });
            }
            grant_deleted(inner, &grant, reason).await;
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "revoking a grant failed"),
    }
}
