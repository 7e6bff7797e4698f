//! Audit events: one structured [`tracing`] event per security decision, under the target
//! [`TARGET`] (`a3_mcp_auth::audit`), so that a subscriber can route them apart (to a SIEM as
//! JSON, say) from the operational log.
//!
//! Every event carries `event` (what was decided) and `outcome`, and whichever of these fields
//! apply: `subject` (the user, the access token's `sub`), `client_id` (the registered host, or
//! the token's client), `client_name` (as registered, without invisible characters), `grant_id`
//! (one user's authorization of one client; not a credential), `scope`, `kind` and `name` (the
//! tool, prompt or resource; a name the caller sent is cut to 128 visible characters), `reason`
//! and `operation` (admin operations). Never a token, code, secret, session id or PKCE value.
//!
//! | `event` | level | `outcome` | other fields |
//! |---|---|---|---|
//! | `client_registered` | INFO | `registered` | `client_id`, `client_name` |
//! | `consent` | INFO | `approve`, `deny` | `client_id`, `scope` |
//! | `confirmation` | INFO | `allow`, `deny` | `subject`, `client_id` |
//! | `grant_issued` | INFO | `issued` | `subject`, `client_id`, `grant_id`, `scope` |
//! | `grant_refreshed` | INFO | `refreshed` | `subject`, `client_id`, `grant_id` |
//! | `grant_revoked` | INFO | `revoked` | `subject`, `client_id`, `grant_id`, `reason`: `client_revoked`, `code_replay`, `code_wrong_client`, `refresh_reuse`, `user_grant_limit`, `replaced` (a new sign-in to the same client and redirect URI), `upstream_refused`, `upstream_token_rejected`, `admin` |
//! | `code_replay` | WARN | `refused` | `client_id`, `grant_id` |
//! | `refresh_token_reuse` | WARN | `refused` | `client_id`, `grant_id` |
//! | `call_refused` | INFO | `refused` | `subject`, `client_id`, `kind` (`tool`, `prompt`, `resource`), `name`, `reason` (`hidden`, `insufficient_scope`) |
//! | `session_refused` | WARN (`not_owner`), INFO | `refused` | `subject`, `client_id`, `reason`: `not_owner` (another principal's session id), `user_limit`, `server_full` |
//! | `admin` | INFO | `done`, `failed` | `operation`, and `subject`, `client_id`, `grant_id` as they apply |
//!
//! Refusals that anyone can cause without signing in (invalid or rate-limited registrations,
//! forged consent posts) are counted in [`metrics`] instead: an event each would
//! let an anonymous caller fill the log.
//!
//! ```
//! use tracing_subscriber::{EnvFilter, fmt};
//!
//! // The audit trail alone, as JSON lines (`fmt().json()` needs tracing-subscriber's `json`).
//! let subscriber = fmt()
//!     .with_env_filter(EnvFilter::new(format!("{}=info", a3_mcp_auth::audit::TARGET)))
//!     .finish();
//! # let _ = subscriber;
//! ```

use crate::claims::{Claims, Principal};
use crate::metrics;

/// The `tracing` target of every audit event.
pub const TARGET: &str = "a3_mcp_auth::audit";

/// Why a grant ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Revocation {
    /// The host revoked one of its tokens (RFC 7009).
    ClientRevoked,
    /// Its authorization code was redeemed twice.
    CodeReplay,
    /// Its code was presented by another client.
    CodeWrongClient,
    /// A rotated refresh token of it was used again.
    RefreshReuse,
    /// Its user signed in with more clients than allowed; it was the least recently used.
    UserGrantLimit,
    /// Its user signed in again to the same client and redirect URI: the new grant replaces it.
    Replaced,
    /// A3 refused to refresh its tokens.
    UpstreamRefused,
    /// A3 refreshed to a token this resource does not accept, or for another user.
    UpstreamTokenRejected,
    /// An administrator ended it.
    Admin,
}

impl Revocation {
    fn as_str(self) -> &'static str {
        match self {
            Revocation::ClientRevoked => "client_revoked",
            Revocation::CodeReplay => "code_replay",
            Revocation::CodeWrongClient => "code_wrong_client",
            Revocation::RefreshReuse => "refresh_reuse",
            Revocation::UserGrantLimit => "user_grant_limit",
            Revocation::Replaced => "replaced",
            Revocation::UpstreamRefused => "upstream_refused",
            Revocation::UpstreamTokenRejected => "upstream_token_rejected",
            Revocation::Admin => "admin",
        }
    }
}

/// Who a grant belongs to, as audit events name it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GrantRef<'a> {
    pub subject: Option<&'a str>,
    pub client_id: &'a str,
    pub grant_id: &'a str,
}

/// A name the caller sent, as it goes into an event: visible characters only, at most 128.
fn sent_name(name: &str) -> String {
    // Cut first too: a request body may carry a name of a megabyte.
    let head: String = name.chars().take(512).collect();
    crate::oauth::html::visible_text(&head)
        .chars()
        .take(128)
        .collect()
}

/// A client registered (`client_name` as stored: already without invisible characters).
pub(crate) fn client_registered(client_id: &str, client_name: Option<&str>) {
    tracing::info!(
        target: TARGET,
        event = "client_registered",
        outcome = "registered",
        client_id,
        client_name,
        "audit"
    );
}

/// The consent page's decision for `client_id`.
pub(crate) fn consent(client_id: &str, scope: &str, approved: bool) {
    let outcome = if approved { "approve" } else { "deny" };
    ::metrics::counter!(metrics::CONSENTS, "decision" => outcome).increment(1);
    tracing::info!(target: TARGET, event = "consent", outcome, client_id, scope, "audit");
}

/// A consent post refused before any decision (CSRF, origin, expired form): counted only.
pub(crate) fn consent_refused() {
    ::metrics::counter!(metrics::CONSENTS, "decision" => "refused").increment(1);
}

/// The user's confirmation, after the upstream sign-in, that `subject` goes to `client_id`.
pub(crate) fn confirmation(subject: Option<&str>, client_id: &str, allowed: bool) {
    let outcome = if allowed { "allow" } else { "deny" };
    ::metrics::counter!(metrics::CONFIRMATIONS, "decision" => outcome).increment(1);
    tracing::info!(target: TARGET, event = "confirmation", outcome, subject, client_id, "audit");
}

/// A confirmation post refused before any decision: counted only.
pub(crate) fn confirmation_refused() {
    ::metrics::counter!(metrics::CONFIRMATIONS, "decision" => "refused").increment(1);
}

/// The host redeemed its code: the grant's first tokens were issued.
pub(crate) fn grant_issued(grant: GrantRef<'_>, scope: &str) {
    let GrantRef {
        subject,
        client_id,
        grant_id,
    } = grant;
    tracing::info!(
        target: TARGET,
        event = "grant_issued",
        outcome = "issued",
        subject,
        client_id,
        grant_id,
        scope,
        "audit"
    );
}

/// The host refreshed its tokens (rotation).
pub(crate) fn grant_refreshed(grant: GrantRef<'_>) {
    let GrantRef {
        subject,
        client_id,
        grant_id,
    } = grant;
    tracing::info!(
        target: TARGET,
        event = "grant_refreshed",
        outcome = "refreshed",
        subject,
        client_id,
        grant_id,
        "audit"
    );
}

/// A grant ended: every token of it stops working.
pub(crate) fn grant_revoked(grant: GrantRef<'_>, reason: Revocation) {
    let reason = reason.as_str();
    ::metrics::counter!(metrics::REVOKED, "reason" => reason).increment(1);
    let GrantRef {
        subject,
        client_id,
        grant_id,
    } = grant;
    tracing::info!(
        target: TARGET,
        event = "grant_revoked",
        outcome = "revoked",
        subject,
        client_id,
        grant_id,
        reason,
        "audit"
    );
}

/// An authorization code was presented again after its redemption.
pub(crate) fn code_replay(client_id: &str, grant_id: &str) {
    replayed("authorization_code", "code_replay", client_id, grant_id);
}

/// A rotated refresh token was used again outside the retry grace.
pub(crate) fn refresh_reuse(client_id: &str, grant_id: &str) {
    replayed("refresh_token", "refresh_token_reuse", client_id, grant_id);
}

/// A single-use `credential` presented again: counted, and audited as `event`.
fn replayed(credential: &'static str, event: &'static str, client_id: &str, grant_id: &str) {
    ::metrics::counter!(metrics::REPLAYS, "credential" => credential).increment(1);
    tracing::warn!(
        target: TARGET,
        event,
        outcome = "refused",
        client_id,
        grant_id,
        "audit"
    );
}

/// A tool call, prompt get or resource read refused: `kind` is `tool`, `prompt` or `resource`,
/// `reason` `hidden` or `insufficient_scope`.
pub(crate) fn call_refused(claims: Option<&Claims>, kind: &'static str, name: &str, reason: &'static str) {
    tracing::info!(
        target: TARGET,
        event = "call_refused",
        outcome = "refused",
        subject = claims.and_then(Claims::subject),
        client_id = claims.and_then(Claims::client_id),
        kind,
        name = sent_name(name),
        reason,
        "audit"
    );
}

/// An MCP request refused by the session binding: `not_owner` (a session id bound to another
/// principal), `user_limit` or `server_full`.
pub(crate) fn session_refused(principal: Option<&Principal>, reason: &'static str) {
    metrics::refused("session_binding", reason);
    let subject = principal.map(|p| p.subject.as_str());
    let client_id = principal.map(|p| p.client_id.as_str());
    if reason == "not_owner" {
        tracing::warn!(target: TARGET, event = "session_refused", outcome = "refused", subject, client_id, reason, "audit");
    } else {
        tracing::info!(target: TARGET, event = "session_refused", outcome = "refused", subject, client_id, reason, "audit");
    }
}

/// An operation of the admin API (`operation`: e.g. `revoke_grant`, `sign_out`, `delete_client`),
/// done or failed, on whichever of subject, client and grant it names.
pub(crate) fn admin(
    operation: &'static str,
    done: bool,
    subject: Option<&str>,
    client_id: Option<&str>,
    grant_id: Option<&str>,
) {
    let outcome = if done { "done" } else { "failed" };
    tracing::info!(
        target: TARGET,
        event = "admin",
        outcome,
        operation,
        subject,
        client_id,
        grant_id,
        "audit"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sent_by_callers_are_visible_and_short() {
        assert_eq!(sent_name("add"), "add");
        assert_eq!(sent_name("a\u{202e}dd\nx"), "add x");
        assert_eq!(sent_name(&"x".repeat(1000)).len(), 128);
    }
}
