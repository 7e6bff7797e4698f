//! The bridge's admin operations, as methods on [`DcrBridge`] and as the routes of
//! [`DcrBridge::admin_router`], for the admin listener ([`crate::admin`]): list registered
//! clients and grants, revoke a grant, sign a user out everywhere, delete a client.
//!
//! Every revocation deletes the grant under its lock (waiting for a refresh in progress), so
//! that every token of it fails at the next request on every replica, then revokes A3's refresh
//! token at A3 and waits for A3's answer. No response carries a token, a code or a sealed blob.
//! Listings come in pages of at most [`MAX_PAGE`] items, ordered by id, with the cursor of the
//! next page.
//!
//! | route | answers |
//! |---|---|
//! | `GET /admin/clients?after=&limit=` | a [`Page`] of [`ClientSummary`] |
//! | `GET /admin/clients/{client_id}` | a [`ClientSummary`], or 404 |
//! | `DELETE /admin/clients/{client_id}` | the client and its grants deleted: a [`Revocation`], or 404 |
//! | `GET /admin/grants?subject=…` or `?client_id=…` (`&after=&limit=`) | a [`Page`] of [`GrantSummary`] |
//! | `DELETE /admin/grants/{grant_id}` | the grant revoked: a [`Revocation`], or 404 |
//! | `POST /admin/sign-out` with `{"subject": "…"}` | every grant of the user revoked: a [`Revocation`] |
//!
//! Clients are the hosts registered at `/register`. A host identified by the URL of its Client ID
//! Metadata Document is no registration (its document is fetched again when needed): its grants
//! are listed with `?client_id=<url>` and revoked one by one or by user; keep such a host out
//! with `CIMD_ALLOWED_HOSTS`.
//!
//! Errors are JSON (`{"error", "error_description"}`): 400 `invalid_request`, 404 `not_found`,
//! 415 for a body that is not `application/json`, 503 `temporarily_unavailable` when the store
//! fails (nothing is half done that a retry does not finish).

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::grant::{Grant, end_grant, lock};
use super::store::{Index, IndexEntry, Namespace, StoreError, subject_key};
use super::{DcrBridge, RegisteredClient};
use crate::audit;
use crate::oauth::response::oauth_error;

/// Most items of one page of a listing.
pub const MAX_PAGE: usize = 500;
/// Items of a page when the request names no `limit`.
pub const DEFAULT_PAGE: usize = 100;
/// How many grants' A3 tokens are revoked at A3 at once.
const UPSTREAM_CONCURRENCY: usize = 8;

/// One page of a listing: `items` in id order, and `next`, the `after` of the next page (`None`
/// on the last page).
///
/// ```
/// use a3_mcp_auth::dcr::admin::Page;
///
/// let page = Page { items: vec!["a", "b"], next: Some("b".to_owned()) };
/// assert_eq!(serde_json::to_value(&page).unwrap(), serde_json::json!({"items": ["a", "b"], "next": "b"}));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// The items, in id order.
    pub items: Vec<T>,
    /// The cursor of the next page, `None` on the last.
    pub next: Option<String>,
}

/// A registered client as the admin API lists it: its registration (no secret: registered
/// clients are public) and how many live grants it holds.
///
/// ```
/// use a3_mcp_auth::dcr::admin::ClientSummary;
///
/// fn describe(c: &ClientSummary) -> String {
///     let name = c.client.client_name.as_deref().unwrap_or("(no name)");
///     format!("{} {name}: {} grants", c.client.client_id, c.active_grants)
/// }
/// # let _ = describe;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClientSummary {
    /// The registration, as `POST /register` answered it.
    #[serde(flatten)]
    pub client: RegisteredClient,
    /// Live grants (users signed in through it).
    pub active_grants: usize,
}

/// A grant as the admin API lists it: who authorized which client, for what, until when. Never
/// a token.
///
/// ```
/// use a3_mcp_auth::dcr::admin::GrantSummary;
///
/// fn line(g: &GrantSummary) -> String {
///     format!("{} {} → {} ({})", g.grant_id, g.subject.as_deref().unwrap_or("?"), g.client_id, g.scope)
/// }
/// # let _ = line;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GrantSummary {
    /// The grant's id (what `DELETE /admin/grants/{grant_id}` takes).
    pub grant_id: String,
    /// The registered client it was issued to.
    pub client_id: String,
    /// The user (A3's `sub`).
    pub subject: Option<String>,
    /// The scope granted.
    pub scope: String,
    /// The resource it is for.
    pub resource: String,
    /// When the user signed in (Unix seconds; absent for grants of earlier versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    /// When it ends unless used (Unix seconds): each refresh moves it.
    pub expires_at: u64,
}

/// What a revocation ended: grants deleted here, and A3 refresh tokens A3 confirmed revoked
/// (fewer when A3 advertises no revocation endpoint or did not answer; the grants are ended
/// here regardless).
///
/// ```
/// use a3_mcp_auth::dcr::admin::Revocation;
///
/// let r = Revocation::default();
/// assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!({"grants_revoked": 0, "a3_tokens_revoked": 0}));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Revocation {
    /// Grants deleted.
    pub grants_revoked: usize,
    /// A3 refresh tokens that A3 confirmed revoked.
    pub a3_tokens_revoked: usize,
}

impl DcrBridge {
    /// One page of the registered clients, in client-id order: those after `after`, at most
    /// `limit` (1 to [`MAX_PAGE`]). Needs a store that can list ([`Store::keys`](super::store::Store::keys);
    /// every store of this crate can).
    ///
    /// ```
    /// use a3_mcp_auth::A3Config;
    /// use a3_mcp_auth::dcr::DcrBridge;
    /// use a3_mcp_auth::dcr::store::MemoryStore;
    /// use a3_mcp_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
    /// // Every page in turn.
    /// let mut after = None;
    /// loop {
    ///     let page = bridge.clients(after.as_deref(), 100).await.unwrap();
    ///     for c in &page.items {
    ///         println!("{} {:?} {} grants", c.client.client_id, c.client.client_name, c.active_grants);
    ///     }
    ///     match page.next {
    ///         Some(next) => after = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn clients(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ClientSummary>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut ids = self.inner.store.keys(Namespace::Client, after, limit + 1).await?;
        let next = (ids.len() > limit).then(|| ids[limit - 1].clone());
        ids.truncate(limit);
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            // Gone since it was listed: skipped.
            if let Some(c) = self.client(&id).await? {
                items.push(c);
            }
        }
        Ok(Page { items, next })
    }

    /// The registered client `client_id`, if it is registered.
    ///
    /// ```
    /// # use a3_mcp_auth::{A3Config, dcr::DcrBridge, dcr::store::MemoryStore, testing::TestIssuer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let issuer = TestIssuer::start().await;
    /// # let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
    /// assert_eq!(bridge.client("never-registered").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientSummary>, StoreError> {
        let store = &self.inner.store;
        let Some(client) = store
            .get_json::<RegisteredClient>(Namespace::Client, client_id)
            .await?
        else {
            return Ok(None);
        };
        let active_grants = store.index_members(Index::GrantsByClient, client_id).await?.len();
        Ok(Some(ClientSummary {
            client,
            active_grants,
        }))
    }

    /// One page of the grants of the user `subject` (A3's `sub`), in grant-id order. A user
    /// holds at most `max_grants_per_user` of them.
    ///
    /// ```
    /// # use a3_mcp_auth::{A3Config, dcr::DcrBridge, dcr::store::MemoryStore, testing::TestIssuer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let issuer = TestIssuer::start().await;
    /// # let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
    /// let page = bridge.grants_of_subject("janedoe@test.com", None, 100).await.unwrap();
    /// for g in &page.items {
    ///     println!("{} via {} until {}", g.grant_id, g.client_id, g.expires_at);
    /// }
    /// assert!(page.items.is_empty() && page.next.is_none());
    /// # }
    /// ```
    pub async fn grants_of_subject(
        &self,
        subject: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<GrantSummary>, StoreError> {
        self.grants_in(Index::GrantsBySubject, &subject_key(subject), after, limit)
            .await
    }

    /// One page of the grants issued to the registered client `client_id`, in grant-id order.
    ///
    /// ```
    /// # use a3_mcp_auth::{A3Config, dcr::DcrBridge, dcr::store::MemoryStore, testing::TestIssuer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let issuer = TestIssuer::start().await;
    /// # let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
    /// let page = bridge.grants_of_client("some-client-id", None, 100).await.unwrap();
    /// let users: Vec<_> = page.items.iter().filter_map(|g| g.subject.as_deref()).collect();
    /// assert!(users.is_empty());
    /// # }
    /// ```
    pub async fn grants_of_client(
        &self,
        client_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<GrantSummary>, StoreError> {
        self.grants_in(Index::GrantsByClient, client_id, after, limit)
            .await
    }

    async fn grants_in(
        &self,
        index: Index,
        key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<GrantSummary>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let store = &self.inner.store;
        let mut members: Vec<IndexEntry> = store
            .index_members(index, key)
            .await?
            .into_iter()
            .filter(|e| after.is_none_or(|a| e.member.as_str() > a))
            .collect();
        members.sort_by(|a, b| a.member.cmp(&b.member));
        let next = (members.len() > limit).then(|| members[limit - 1].member.clone());
        members.truncate(limit);
        let mut items = Vec::with_capacity(members.len());
        for entry in members {
            // Ended since it was indexed: skipped.
            if let Some(g) = store.get_json::<Grant>(Namespace::Grant, &entry.member).await? {
                items.push(GrantSummary {
                    grant_id: g.id,
                    client_id: g.client_id,
                    subject: g.subject,
                    scope: g.scope,
                    resource: g.resource,
                    created_at: (g.created_at > 0).then_some(g.created_at),
                    expires_at: entry.expires_at,
                });
            }
        }
        Ok(Page { items, next })
    }

    /// Revokes the grant `grant_id`: every token of it fails at the next request, on every
    /// replica, and A3's refresh token is revoked at A3. `Ok(None)`: no such grant.
    ///
    /// ```
    /// # use a3_mcp_auth::{A3Config, dcr::DcrBridge, dcr::store::MemoryStore, testing::TestIssuer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let issuer = TestIssuer::start().await;
    /// # let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
    /// // Revoke what one user holds through one client.
    /// for g in bridge.grants_of_subject("janedoe@test.com", None, 100).await.unwrap().items {
    ///     if g.client_id == "a-suspicious-client" {
    ///         bridge.revoke_grant(&g.grant_id).await.unwrap();
    ///     }
    /// }
    /// assert_eq!(bridge.revoke_grant("no-such-grant").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn revoke_grant(&self, grant_id: &str) -> Result<Option<Revocation>, StoreError> {
        let ended = end_grant(&self.inner, grant_id).await?;
        if ended.is_some() {
            audit::admin("revoke_grant", true, None, None, Some(grant_id));
        }
        Ok(ended.map(|a3| Revocation {
            grants_revoked: 1,
            a3_tokens_revoked: a3 as usize,
        }))
    }

    /// Signs the user `subject` (A3's `sub`) out everywhere: revokes every grant the user holds,
    /// through every client, and their A3 refresh tokens at A3. A sign-in still in progress may
    /// complete afterwards; to keep a user out, disable the user at A3 too.
    ///
    /// ```
    /// # use a3_mcp_auth::{A3Config, dcr::DcrBridge, dcr::store::MemoryStore, testing::TestIssuer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let issuer = TestIssuer::start().await;
    /// # let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
    /// let ended = bridge.sign_out("janedoe@test.com").await.unwrap();
    /// println!("{} grants revoked, {} at A3", ended.grants_revoked, ended.a3_tokens_revoked);
    /// # assert_eq!(ended.grants_revoked, 0);
    /// # }
    /// ```
    pub async fn sign_out(&self, subject: &str) -> Result<Revocation, StoreError> {
        let grants = self
            .inner
            .store
            .index_members(Index::GrantsBySubject, &subject_key(subject))
            .await?;
        let ended = self.end_all(grants).await?;
        audit::admin("sign_out", true, Some(subject), None, None);
        Ok(ended)
    }

    /// Deletes the registered client `client_id` and revokes every grant issued to it (with
    /// their A3 refresh tokens). The client is deleted first, so none of its codes can be
    /// redeemed meanwhile; the host must register again. `Ok(None)`: not registered.
    ///
    /// ```
    /// # use a3_mcp_auth::{A3Config, dcr::DcrBridge, dcr::store::MemoryStore, testing::TestIssuer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let issuer = TestIssuer::start().await;
    /// # let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
    /// // Remove every client that registered under a given name.
    /// for c in bridge.clients(None, 500).await.unwrap().items {
    ///     if c.client.client_name.as_deref() == Some("Totally Legit Host") {
    ///         bridge.delete_client(&c.client.client_id).await.unwrap();
    ///     }
    /// }
    /// assert_eq!(bridge.delete_client("never-registered").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn delete_client(&self, client_id: &str) -> Result<Option<Revocation>, StoreError> {
        let inner = &self.inner;
        {
            // Under the client's lock, so that a lifetime update in progress cannot write the
            // client back.
            let _lock = lock(inner, format!("client:{client_id}")).await?;
            if inner.store.get(Namespace::Client, client_id).await?.is_none() {
                return Ok(None);
            }
            inner.store.delete(Namespace::Client, client_id).await?;
        }
        let grants = inner
            .store
            .index_members(Index::GrantsByClient, client_id)
            .await?;
        let ended = self.end_all(grants).await?;
        audit::admin("delete_client", true, None, Some(client_id), None);
        Ok(Some(ended))
    }

    /// Ends every grant of `grants`, a few at a time (each waits for A3's answer).
    async fn end_all(&self, grants: Vec<IndexEntry>) -> Result<Revocation, StoreError> {
        let ids: BTreeSet<String> = grants.into_iter().map(|e| e.member).collect();
        let mut ends = futures_util::stream::iter(ids)
            .map(|id| async move { end_grant(&self.inner, &id).await })
            .buffer_unordered(UPSTREAM_CONCURRENCY);
        let mut total = Revocation::default();
        while let Some(ended) = ends.next().await {
            if let Some(a3) = ended? {
                total.grants_revoked += 1;
                total.a3_tokens_revoked += a3 as usize;
            }
        }
        Ok(total)
    }

    /// The admin API's routes (see the [module docs](self)): a plain [`Router`], to serve on the
    /// admin listener with `a3_mcp_auth::admin::serve(&config, bridge.admin_router())`, which
    /// puts every route of the listener (these, and any merged beside them, such as metrics)
    /// behind [`AdminAuthLayer`](crate::admin::AdminAuthLayer). They carry no check of their
    /// own: never merge them into the public router; to serve them yourself, add
    /// `AdminAuthLayer::from_config(&config)` on top.
    ///
    /// ```
    /// use a3_mcp_auth::A3Config;
    /// use a3_mcp_auth::dcr::DcrBridge;
    /// use a3_mcp_auth::dcr::store::MemoryStore;
    /// use a3_mcp_auth::testing::TestIssuer;
    /// use std::future::IntoFuture;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// let config = A3Config::builder()
    ///     .issuer_url(issuer.url())
    ///     .client("proxy", "secret")
    ///     .admin_addr("127.0.0.1:0")
    ///     .build()
    ///     .unwrap();
    /// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
    /// let admin = a3_mcp_auth::admin::serve(&config, bridge.admin_router()).await.unwrap();
    /// let url = format!("http://{}/admin/clients", admin.local_addr().unwrap());
    /// tokio::spawn(admin.into_future());
    /// let page: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    /// assert_eq!(page, serde_json::json!({"items": [], "next": null}));
    /// # }
    /// ```
    pub fn admin_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/admin/clients", get(list_clients))
            .route(
                "/admin/clients/{client_id}",
                get(show_client).delete(remove_client),
            )
            .route("/admin/grants", get(list_grants))
            .route("/admin/grants/{grant_id}", delete(remove_grant))
            .route("/admin/sign-out", post(sign_out))
            .layer(DefaultBodyLimit::max(16 * 1024))
            .with_state(self.clone())
    }
}

#[derive(Deserialize)]
struct ListParams {
    after: Option<String>,
    limit: Option<usize>,
    subject: Option<String>,
    client_id: Option<String>,
}

/// Longest subject, client id or grant id the admin API looks up.
const MAX_ID_LEN: usize = 1024;

fn invalid_request(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// The listing's parameters, or why they are refused (400).
fn params(query: Result<Query<ListParams>, QueryRejection>) -> Result<ListParams, &'static str> {
    let Query(p) = query.map_err(|_| "malformed query: after, limit, subject, client_id")?;
    let too_long = [&p.after, &p.subject, &p.client_id]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| v.len() > MAX_ID_LEN));
    if too_long {
        return Err("a parameter is too long");
    }
    Ok(p)
}

/// An operation's outcome as JSON (uncached); `None` is 404 `not_found` with `missing` as its
/// description, a store failure 503.
fn answer<T: Serialize>(outcome: Result<Option<T>, StoreError>, missing: &str) -> Response {
    match outcome {
        Ok(Some(value)) => crate::oauth::response::no_store(axum::Json(value).into_response()),
        Ok(None) => oauth_error(StatusCode::NOT_FOUND, "not_found", missing),
        Err(e) => super::errors::store_failure(e),
    }
}

async fn list_clients(
    State(bridge): State<DcrBridge>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let p = match params(query) {
        Ok(p) => p,
        Err(why) => return invalid_request(why),
    };
    answer(
        bridge
            .clients(p.after.as_deref(), p.limit.unwrap_or(DEFAULT_PAGE))
            .await
            .map(Some),
        "",
    )
}

async fn show_client(State(bridge): State<DcrBridge>, Path(client_id): Path<String>) -> Response {
    answer(bridge.client(&client_id).await, "no such client")
}

async fn remove_client(State(bridge): State<DcrBridge>, Path(client_id): Path<String>) -> Response {
    answer(bridge.delete_client(&client_id).await, "no such client")
}

async fn list_grants(
    State(bridge): State<DcrBridge>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let p = match params(query) {
        Ok(p) => p,
        Err(why) => return invalid_request(why),
    };
    let (after, limit) = (p.after.as_deref(), p.limit.unwrap_or(DEFAULT_PAGE));
    let page = match (p.subject.as_deref(), p.client_id.as_deref()) {
        (Some(subject), None) => bridge.grants_of_subject(subject, after, limit).await,
        (None, Some(client_id)) => bridge.grants_of_client(client_id, after, limit).await,
        _ => return invalid_request("name exactly one of subject and client_id"),
    };
    answer(page.map(Some), "")
}

async fn remove_grant(State(bridge): State<DcrBridge>, Path(grant_id): Path<String>) -> Response {
    answer(bridge.revoke_grant(&grant_id).await, "no such grant")
}

#[derive(Deserialize)]
struct SignOut {
    subject: String,
}

async fn sign_out(State(bridge): State<DcrBridge>, headers: HeaderMap, body: Bytes) -> Response {
    if !crate::oauth::content_type_is(&headers, "application/json") {
        return oauth_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "the body must be {\"subject\": \"…\"} sent as Content-Type: application/json",
        );
    }
    let Ok(SignOut { subject }) = serde_json::from_slice(&body) else {
        return invalid_request("the body must be {\"subject\": \"…\"}");
    };
    if subject.is_empty() || subject.len() > MAX_ID_LEN {
        return invalid_request("subject must be 1 to 1024 bytes");
    }
    answer(bridge.sign_out(&subject).await.map(Some), "")
}
