//! The confirmation after the upstream sign-in, on plain-http public URLs: `GET /auth/callback`
//! shows it ([`ask`]), `POST /auth/confirm` takes the decision ([`decide`]).
//!
//! On `http://127.0.0.1:8000` any page served from any port of the host can set our cookies, the
//! browser binding of a transaction included (browsers do not isolate cookies by port, [RFC 6265
//! §8.5](https://www.rfc-editor.org/rfc/rfc6265#section-8.5)). An attacker who approved his own
//! client in his own browser can plant his binding in the victim's browser and send her to A3,
//! which signs her in silently: the callback alone cannot tell her browser from his. So the
//! callback keeps the finished sign-in as a pending grant (A3's tokens sealed, 256-bit random id
//! stored only as its SHA-256, single use, as long as a transaction lives) and answers with a page
//! that names the signed-in account, the client and where the code would go. Only a post of that
//! page's form from our own origin (`Origin` and `Sec-Fetch-Site`, which no page can forge)
//! turns it into our code: the pending id is in that page alone, which a page on another port
//! cannot read (the same-origin policy isolates ports). Deny revokes A3's tokens and sends
//! `access_denied` to the host.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::authorize::HostRequest;
use super::callback::{issue_code, to_host};
use super::cimd::Requester;
use super::client::{self, LookupError};
use super::grant::Grant;
use super::store::Namespace;
use super::{Inner, pages};
use crate::audit;
use crate::claims::Claims;
use crate::oauth::html::{error_page, same_origin_post};

/// A finished upstream sign-in waiting for the user's confirmation.
#[derive(Serialize, Deserialize)]
struct PendingGrant {
    request: HostRequest,
    /// A3's tokens, sealed: the grant the code will stand for.
    grant: Grant,
}

/// Where a pending grant is stored: beside the transactions it continues, under the hash of its
/// id, so that the store never holds what the form posts.
fn key(confirmation: &str) -> String {
    format!("confirm:{}", crate::oauth::sha256_b64url(confirmation))
}

/// The account A3 signed in, as the user knows it: `email`, else `name`, else `sub`.
fn account(claims: &Claims) -> &str {
    ["email", "name", "sub"]
        .iter()
        .filter_map(|c| claims.get(c).and_then(Value::as_str))
        .find(|a| !a.trim().is_empty())
        .unwrap_or("(an account without a name)")
}

/// Ends a sign-in nobody will use: A3's tokens are revoked in the background.
fn discard(inner: &Inner, grant: &Grant) {
    if let Some(tokens) = grant.open(&inner.keys) {
        let upstream = inner.upstream.clone();
        tokio::spawn(async move { upstream.revoke(&tokens).await });
    }
}

/// Keeps the finished sign-in pending and answers with the confirmation page.
pub(crate) async fn ask(
    inner: &Inner,
    request: HostRequest,
    grant: Grant,
    claims: &Claims,
    requester: &Requester,
) -> Response {
    let client = match client::lookup(inner, &request.client_id, requester).await {
        Ok(client) => client,
        Err(LookupError::Unknown | LookupError::Refused(_)) => {
            discard(inner, &grant);
            return error_page(
                StatusCode::BAD_REQUEST,
                "This application's registration expired, or its metadata document is no longer accepted, while you signed in. Connect it again.",
            );
        }
        Err(e) => {
            if let LookupError::Store(e) = &e {
                tracing::error!(error = %e, "DCR store failure");
            }
            discard(inner, &grant);
            return to_host(
                inner,
                &request,
                "temporarily_unavailable",
                "the client's metadata or the storage is unavailable",
            );
        }
    };
    let confirmation = crate::oauth::random_token();
    let pending = PendingGrant { request, grant };
    if let Err(e) = inner
        .store
        .put_json(
            Namespace::Transaction,
            &key(&confirmation),
            &pending,
            Some(inner.limits.transaction_ttl),
        )
        .await
    {
        tracing::error!(error = %e, "DCR store failure");
        discard(inner, &pending.grant);
        return to_host(
            inner,
            &pending.request,
            "temporarily_unavailable",
            "storage is unavailable",
        );
    }
    let request = &pending.request;
    pages::confirmation_page(
        &pages::Request {
            client: &client,
            redirect_uri: &request.redirect_uri,
            scope: &request.scope,
            resource: &request.resource,
        },
        account(claims),
        &confirmation,
    )
}

/// The confirmation form.
#[derive(Deserialize)]
pub(crate) struct ConfirmForm {
    confirmation: Option<String>,
    decision: Option<String>,
}

/// `POST /auth/confirm`: Allow issues our code to the host, Deny revokes the sign-in.
pub(crate) async fn decide(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "The confirmation form is malformed.");
    };
    // Checked before the pending grant is touched: a refused post does not use it up.
    if !same_origin_post(&headers, &inner.issuer) {
        audit::confirmation_refused();
        return error_page(
            StatusCode::FORBIDDEN,
            "This confirmation was not submitted from this server's page.",
        );
    }
    let allow = match form.decision.as_deref() {
        Some("allow") => true,
        Some("deny") => false,
        _ => return error_page(StatusCode::BAD_REQUEST, "No decision was made."),
    };
    let expired = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "This confirmation expired or was already answered. Start again from your application.",
        )
    };
    let Some(confirmation) = form.confirmation.filter(|c| c.len() == 43) else {
        audit::confirmation_refused();
        return expired();
    };
    let pending: PendingGrant = match inner
        .store
        .take_json(Namespace::Transaction, &key(&confirmation))
        .await
    {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            audit::confirmation_refused();
            return expired();
        }
        Err(e) => {
            tracing::error!(error = %e, "DCR store failure");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server's storage is unavailable. Try again later.",
            );
        }
    };
    let (subject, client_id) = (pending.grant.subject.as_deref(), &pending.request.client_id);
    audit::confirmation(subject, client_id, allow);
    if allow {
        return issue_code(&inner, &pending.request, &pending.grant).await;
    }
    discard(&inner, &pending.grant);
    to_host(
        &inner,
        &pending.request,
        "access_denied",
        "the user denied access",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_account_is_named_as_its_owner_knows_it() {
        let name = |v: Value| account(&Claims::from_value(v).unwrap()).to_owned();
        assert_eq!(
            name(json!({"sub": "u-1", "name": "Jane Doe", "email": "jane@test.com"})),
            "jane@test.com"
        );
        assert_eq!(name(json!({"sub": "u-1", "name": "Jane Doe"})), "Jane Doe");
        assert_eq!(name(json!({"sub": "u-1", "email": 5, "name": " "})), "u-1");
        assert_eq!(name(json!({"sub": " "})), "(an account without a name)");
    }
}
