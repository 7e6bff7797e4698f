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

/// Most access tokens of one grant that work at once: issuing another (a refresh, a retried
/// refresh) drops the oldest, so a refresh loop cannot grow the store.
pub(crate) const MAX_ACCESS_TOKENS: usize = 4;

/// A grant: one user's authorization of one registered client, holding A3's tokens sealed, and
/// the hashes of our tokens that are valid for it (a bounded number: see [`MAX_ACCESS_TOKENS`]
/// and [`RefreshChain`]). Our tokens name their grant ([`crypto::grant_token`]), so no entry
/// per token is stored.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub id: String,
    pub client_id: String,
    pub subject: Option<String>,
    pub scope: String,
    pub resource: String,
    /// `UpstreamTokens` as JSON, sealed with the grant id as associated data.
    pub upstream: Vec<u8>,
    /// When the user signed in (Unix seconds; 0 for grants written by earlier versions).
    #[serde(default)]
    pub created_at: u64,
    /// Our live access tokens, oldest first, at most [`MAX_ACCESS_TOKENS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_tokens: Vec<IssuedToken>,
    /// Our refresh token chain: `None` until a refresh token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshChain>,
    /// Where the host received the code (absent in grants written by earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

/// The hash of one of our access tokens and when it expires (Unix seconds).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct IssuedToken {
    pub hash: String,
    pub expires_at: u64,
}

/// A grant's refresh tokens: the one valid now, and the one it replaced, kept through the grace
/// period for a client that lost the response. Any other refresh token naming the grant is an
/// older one presented again: reuse ([OAuth 2.1
/// §4.3.1](https://datatracker.ietf.org/doc/html/draft-ietf-oauth-v2-1#section-4.3.1)).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct RefreshChain {
    /// SHA-256 of the current refresh token.
    pub current: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<RotatedToken>,
}

/// A refresh token replaced by the current one.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct RotatedToken {
    /// Its SHA-256.
    pub hash: String,
    /// When it was replaced (Unix seconds).
    pub rotated_at: u64,
    /// The current token, sealed (associated data: `hash`), handed out again to a retry within
    /// the grace period.
    pub successor: Vec<u8>,
}

/// What a refresh token presented for a grant is.
pub(crate) enum RefreshUse {
    /// The grant's current refresh token.
    Current,
    /// The previous one within the grace period: a retry, answered with this successor.
    Retry(String),
    /// Anything else naming the grant: an old token used again.
    Reuse,
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
    /// Whether `hash` is one of this grant's access tokens and has not expired.
    pub(crate) fn has_access_token(&self, hash: &str, now: u64) -> bool {
        // The hashes are of 256-bit random values: comparing them leaks nothing usable.
        self.access_tokens
            .iter()
            .any(|t| t.hash == hash && t.expires_at > now)
    }

    /// Records a new access token, dropping expired ones and the oldest beyond
    /// [`MAX_ACCESS_TOKENS`].
    pub(crate) fn add_access_token(&mut self, hash: String, expires_at: u64, now: u64) {
        self.access_tokens.retain(|t| t.expires_at > now);
        self.access_tokens.push(IssuedToken { hash, expires_at });
        let excess = self.access_tokens.len().saturating_sub(MAX_ACCESS_TOKENS);
        self.access_tokens.drain(..excess);
    }

    /// What the refresh token with hash `presented` is for this grant. `legacy_unrotated`: the
    /// token was issued by an earlier version (stored by hash) and not yet rotated, which makes
    /// it current while the grant has no chain yet.
    pub(crate) fn refresh_use(
        &self,
        keys: &Keys,
        presented: &str,
        legacy_unrotated: bool,
        now: u64,
        grace: Duration,
    ) -> RefreshUse {
        let Some(chain) = &self.refresh else {
            return if legacy_unrotated {
                RefreshUse::Current
            } else {
                RefreshUse::Reuse
            };
        };
        if chain.current == presented {
            return RefreshUse::Current;
        }
        let retry = chain
            .previous
            .as_ref()
            .filter(|p| p.hash == presented && now < p.rotated_at.saturating_add(grace.as_secs()))
            .and_then(|p| keys.open(p.hash.as_bytes(), &p.successor))
            .and_then(|s| String::from_utf8(s).ok());
        match retry {
            Some(successor) => RefreshUse::Retry(successor),
            None => RefreshUse::Reuse,
        }
    }

    /// Whether `hash` is a token this grant would honour (a live access token, or the current or
    /// previous refresh token): what `/revoke` needs before it ends the grant.
    pub(crate) fn knows(&self, hash: &str, now: u64) -> bool {
        self.has_access_token(hash, now)
            || self
                .refresh
                .as_ref()
                .is_some_and(|c| c.current == hash || c.previous.as_ref().is_some_and(|p| p.hash == hash))
    }

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

/// What our access and refresh token hashes mapped to in earlier versions, which stored an
/// entry per token ([`Namespace::AccessToken`], [`Namespace::RefreshToken`]). Only read now, for
/// the tokens those versions issued, until they expire.
#[derive(Deserialize)]
struct TokenEntry {
    grant_id: String,
    #[serde(default)]
    rotated: bool,
    #[serde(default)]
    rotated_at: Option<u64>,
}

/// The grant one of our access or refresh tokens names.
pub(crate) struct NamedGrant {
    pub grant_id: String,
    /// `Some` for a token issued by an earlier version (no grant id in it, an entry per token):
    /// whether that entry was still unrotated.
    pub legacy: Option<bool>,
}

/// The grant that `token`, an access or refresh token of ours (`prefix` says which), names; a
/// token issued by an earlier version is looked up by its hash in `legacy`. `None`: not a token
/// of that kind, or unknown.
pub(crate) async fn grant_named_by(
    inner: &Inner,
    token: &str,
    prefix: &str,
    legacy: Namespace,
) -> Result<Option<NamedGrant>, StoreError> {
    if let Some(grant_id) = super::crypto::grant_of(token, prefix) {
        return Ok(Some(NamedGrant {
            grant_id: grant_id.to_owned(),
            legacy: None,
        }));
    }
    if !token.starts_with(prefix) {
        return Ok(None);
    }
    let entry: Option<TokenEntry> = inner
        .store
        .get_json(legacy, &crate::oauth::sha256_b64url(token))
        .await?;
    Ok(entry.map(|e| NamedGrant {
        legacy: Some(!e.rotated && e.rotated_at.is_none()),
        grant_id: e.grant_id,
    }))
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

/// Ends a grant now, for the admin API: deleted under its lock (after a refresh in progress),
/// so every token of it stops working at every replica, then A3's tokens revoked, awaited.
/// `Ok(None)`: no such grant; `Ok(Some(revoked))`: whether A3 confirmed the revocation.
pub(crate) async fn end_grant(inner: &Inner, grant_id: &str) -> Result<Option<bool>, StoreError> {
    let guard = lock_grant(inner, grant_id).await?;
    let Some(grant) = inner.store.take_json::<Grant>(Namespace::Grant, grant_id).await? else {
        return Ok(None);
    };
    grant_deleted(inner, &grant, Revocation::Admin).await;
    drop(guard);
    Ok(Some(match grant.open(&inner.keys) {
        Some(tokens) => inner.upstream.revoke(&tokens).await,
        None => false,
    }))
}
