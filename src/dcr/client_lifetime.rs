//! How long a dynamically registered client is kept. Registering needs no sign-in, so nothing
//! that anyone can do without one extends a client's life:
//!
//! - A new registration is kept for the unused-client lifetime: by default the consent page's
//!   lifetime plus the upstream transaction's (20 min), the longest a legitimate host takes from
//!   registering to its first completed sign-in.
//! - Once a grant exists for it (from the callback on), it is kept as long as its longest-lived
//!   grant plus a grace period, recomputed from [`Index::GrantsByClient`] whenever one of its
//!   grants is written or ends. When the last grant ends (revoked, refused by A3, expired), the
//!   client goes after the grace.
//!
//! The client's entry expires by itself at that time, in every store. Recomputations for one
//! client are serialised by a lock per client (taken inside a grant's lock), so that two grants
//! written at once cannot leave the older computation last.

use serde::Serialize;

use super::Inner;
use super::grant::lock;
use super::store::{Index, Namespace, StoreError};
use crate::oauth::unix_now;

/// Stores a newly registered client for the unused-client lifetime.
pub(crate) async fn store_new(
    inner: &Inner,
    client_id: &str,
    client: &impl Serialize,
) -> Result<(), StoreError> {
    inner
        .store
        .put_json(
            Namespace::Client,
            client_id,
            client,
            Some(inner.limits.unused_client_ttl()),
        )
        .await
}

/// Keeps the client as long as its longest-lived grant plus the grace, or for the grace from now
/// when it has none left. Called after one of its grants was written or deleted.
pub(crate) async fn settle(inner: &Inner, client_id: &str) -> Result<(), StoreError> {
    let _lock = lock(inner, format!("client:{client_id}")).await?;
    let Some(client) = inner.store.get(Namespace::Client, client_id).await? else {
        return Ok(()); // not a registered client (or gone): nothing to keep
    };
    let last = inner
        .store
        .index_members(Index::GrantsByClient, client_id)
        .await?
        .iter()
        .map(|e| e.expires_at)
        .max()
        .unwrap_or_else(unix_now);
    let until = last.saturating_add(inner.limits.client_grace.as_secs());
    inner
        .store
        .put(Namespace::Client, client_id, client, Some(until))
        .await
}
