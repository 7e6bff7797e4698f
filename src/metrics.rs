//! The crate's metrics, emitted through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! The library only emits: nothing is recorded until the application installs a recorder
//! (`metrics-exporter-prometheus`, an OpenTelemetry bridge, …), and none is forced on it. Every
//! label value is one of a fixed set written in this crate, never user input: no subject, client
//! id, token, URI or header ends up in a label. Tool, prompt and resource names appear only as
//! the [`ContextPolicy`](crate::ContextPolicy) spells them, so a caller cannot mint label values.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `a3mcp_bearer_requests_total` | counter | `outcome`: `accepted`, `missing_token`, `invalid_request`, `invalid_token`, `unavailable` |
//! | `a3mcp_requests_refused_total` | counter | `layer`: `origin_check`, `require_scope`, `tool_context`, `session_binding`; `reason`: `host`, `origin`, `insufficient_scope`, `unauthenticated` (no bearer layer before it), `unknown_session`, `not_owner`, `user_limit`, `server_full` |
//! | `a3mcp_jwt_cache_total` | counter | `result`: `hit`, `miss` |
//! | `a3mcp_jwt_verifications_total` | counter | `result`: `ok`, `expired`, `not_yet_valid`, `bad_signature`, `wrong_issuer`, `wrong_audience`, `unknown_key`, `algorithm`, `malformed`, `keys_unavailable` (verifications that missed the cache) |
//! | `a3mcp_jwks_fetches_total` | counter | `trigger`: `startup`, `scheduled`, `unknown_kid`; `outcome`: `ok`, `error` |
//! | `a3mcp_jwks_refetches_throttled_total` | counter | — (unknown `kid`s answered from the cooldown, without a fetch) |
//! | `a3mcp_upstream_requests_total` | counter | `endpoint`: `discovery`, `jwks`, `token_code`, `token_refresh`, `revocation`; `outcome`: `ok`, `rejected`, `error` |
//! | `a3mcp_upstream_request_duration_seconds` | histogram | `endpoint` |
//! | `a3mcp_store_operations_total` | counter | `operation`: `get`, `put`, `take`, `delete`, `count`, `purge_expired`, `index_put`, `index_remove`, `index_members`, `lock`, `unlock`, `take_tokens` (the rate limits, shared in Redis); `outcome`: `ok`, `error` |
//! | `a3mcp_store_operation_duration_seconds` | histogram | `operation` |
//! | `a3mcp_registrations_total` | counter | `outcome`: `registered`, `rate_limited`, `capacity`, `invalid_client_metadata`, `invalid_redirect_uri`, `unsupported_media_type`, `unavailable`, `disabled` (`DCR_ENABLED=false`) |
//! | `a3mcp_consents_total` | counter | `decision`: `approve`, `deny`, `refused` (a post that failed the CSRF, origin or expiry checks) |
//! | `a3mcp_confirmations_total` | counter | `decision`: `allow`, `deny`, `refused` |
//! | `a3mcp_token_requests_total` | counter | `grant_type`: `authorization_code`, `refresh_token`, `other`; `result`: `ok` or the RFC 6749 §5.2 error code |
//! | `a3mcp_replays_total` | counter | `credential`: `authorization_code`, `refresh_token` |
//! | `a3mcp_grants_revoked_total` | counter | `reason`: see [`audit`](crate::audit) |
//! | `a3mcp_item_requests_total` | counter | `kind`: `tool`, `prompt`, `resource`; `name`: the policy's name (tool, prompt, resource URI or template), `(unlisted)` for names the policy does not have; `outcome`: `allowed`, `hidden`, `insufficient_scope` |
//!
//! ```
//! // After installing your recorder (here the no-op one the facade starts with), give it the
//! // descriptions of the crate's metrics, which exporters show as HELP text.
//! a3_mcp_auth::metrics::describe();
//! ```

use std::time::{Duration, Instant};

use ::metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

use crate::challenge::AuthError;

const BEARER: &str = "a3mcp_bearer_requests_total";
const REFUSED: &str = "a3mcp_requests_refused_total";
const JWT_CACHE: &str = "a3mcp_jwt_cache_total";
const JWT: &str = "a3mcp_jwt_verifications_total";
const JWKS: &str = "a3mcp_jwks_fetches_total";
const JWKS_THROTTLED: &str = "a3mcp_jwks_refetches_throttled_total";
const UPSTREAM: &str = "a3mcp_upstream_requests_total";
const UPSTREAM_SECONDS: &str = "a3mcp_upstream_request_duration_seconds";
const STORE: &str = "a3mcp_store_operations_total";
const STORE_SECONDS: &str = "a3mcp_store_operation_duration_seconds";
pub(crate) const REGISTRATIONS: &str = "a3mcp_registrations_total";
pub(crate) const CONSENTS: &str = "a3mcp_consents_total";
pub(crate) const CONFIRMATIONS: &str = "a3mcp_confirmations_total";
const TOKEN: &str = "a3mcp_token_requests_total";
pub(crate) const REPLAYS: &str = "a3mcp_replays_total";
pub(crate) const REVOKED: &str = "a3mcp_grants_revoked_total";
const ITEMS: &str = "a3mcp_item_requests_total";

/// Registers the description (and unit) of every metric of this crate with the installed
/// recorder. Call it once after installing the recorder; metrics work without it.
pub fn describe() {
    describe_counter!(BEARER, "Requests seen by BearerAuthLayer, by outcome");
    describe_counter!(
        REFUSED,
        "Requests refused by the other layers, by layer and reason"
    );
    describe_counter!(JWT_CACHE, "JwtVerifier lookups in its cache of validated tokens");
    describe_counter!(JWT, "JWT verifications that missed the cache, by result");
    describe_counter!(JWKS, "JWKS fetches, by trigger and outcome");
    describe_counter!(
        JWKS_THROTTLED,
        "Unknown kids answered from the refetch cooldown without a fetch"
    );
    describe_counter!(
        UPSTREAM,
        "Requests to the authorization server (A3), by endpoint and outcome"
    );
    describe_histogram!(
        UPSTREAM_SECONDS,
        Unit::Seconds,
        "Latency of requests to the authorization server (A3)"
    );
    describe_counter!(STORE, "DCR store operations, by operation and outcome");
    describe_histogram!(STORE_SECONDS, Unit::Seconds, "Latency of DCR store operations");
    describe_counter!(REGISTRATIONS, "Dynamic client registrations, by outcome");
    describe_counter!(CONSENTS, "Consent page decisions");
    describe_counter!(CONFIRMATIONS, "Account confirmations after the upstream sign-in");
    describe_counter!(TOKEN, "Token endpoint requests, by grant type and result");
    describe_counter!(REPLAYS, "Replayed authorization codes and reused refresh tokens");
    describe_counter!(REVOKED, "Grants ended, by reason");
    describe_counter!(ITEMS, "Tool calls, prompt gets and resource reads, by outcome");
}

/// The outcome of one request at [`BearerAuthLayer`](crate::BearerAuthLayer). Literal labels
/// keep the accepted path free of allocations.
pub(crate) fn bearer(outcome: Result<(), &AuthError>) {
    let counter = match outcome {
        Ok(()) => counter!(BEARER, "outcome" => "accepted"),
        Err(AuthError::MissingToken) => counter!(BEARER, "outcome" => "missing_token"),
        Err(AuthError::InvalidRequest(_)) => counter!(BEARER, "outcome" => "invalid_request"),
        Err(AuthError::Unavailable { .. }) => counter!(BEARER, "outcome" => "unavailable"),
        Err(_) => counter!(BEARER, "outcome" => "invalid_token"),
    };
    counter.increment(1);
}

/// A request refused by `layer` for `reason` (both fixed strings of this crate).
pub(crate) fn refused(layer: &'static str, reason: &'static str) {
    counter!(REFUSED, "layer" => layer, "reason" => reason).increment(1);
}

/// A lookup in the cache of validated JWTs.
pub(crate) fn jwt_cache(hit: bool) {
    if hit {
        counter!(JWT_CACHE, "result" => "hit").increment(1);
    } else {
        counter!(JWT_CACHE, "result" => "miss").increment(1);
    }
}

/// A JWT verification that missed the cache: `ok` or why it failed.
pub(crate) fn jwt_verification(result: &'static str) {
    counter!(JWT, "result" => result).increment(1);
}

/// One JWKS fetch (also counted as an upstream request).
pub(crate) fn jwks_fetch(trigger: &'static str, ok: bool, started: Instant) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(JWKS, "trigger" => trigger, "outcome" => outcome).increment(1);
    upstream("jwks", outcome, started);
}

/// An unknown `kid` answered from the cooldown.
pub(crate) fn jwks_refetch_throttled() {
    counter!(JWKS_THROTTLED).increment(1);
}

/// One request to the authorization server, started at `started`.
pub(crate) fn upstream(endpoint: &'static str, outcome: &'static str, started: Instant) {
    counter!(UPSTREAM, "endpoint" => endpoint, "outcome" => outcome).increment(1);
    histogram!(UPSTREAM_SECONDS, "endpoint" => endpoint).record(started.elapsed());
}

/// One store operation and how long it took.
pub(crate) fn store(operation: &'static str, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(STORE, "operation" => operation, "outcome" => outcome).increment(1);
    histogram!(STORE_SECONDS, "operation" => operation).record(elapsed);
}

/// One registration and its outcome.
pub(crate) fn registration(outcome: &'static str) {
    counter!(REGISTRATIONS, "outcome" => outcome).increment(1);
}

/// One token request: `grant_type` as the request named it (anything else is `other`) and the
/// response's error code (`ok` without one).
pub(crate) fn token_request(grant_type: Option<&str>, error: Option<&'static str>) {
    let grant_type = match grant_type {
        Some("authorization_code") => "authorization_code",
        Some("refresh_token") => "refresh_token",
        _ => "other",
    };
    counter!(TOKEN, "grant_type" => grant_type, "result" => error.unwrap_or("ok")).increment(1);
}

/// A tool call, prompt get or resource read: `name` is the policy's own name for the item, or
/// `None` when the policy does not name it.
pub(crate) fn item(kind: &'static str, name: Option<&str>, outcome: &'static str) {
    let name = name.map_or_else(|| "(unlisted)".to_owned(), str::to_owned);
    counter!(ITEMS, "kind" => kind, "name" => name, "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString};
    use std::sync::{Arc, Mutex};

    /// Records the keys registered, to check which labels the functions produce.
    #[derive(Default)]
    struct Keys(Arc<Mutex<Vec<String>>>);

    impl Recorder for Keys {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            self.0
                .lock()
                .unwrap()
                .push(format!("{}{{{}}}", key.name(), labels.join(",")));
            Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn labels_are_the_fixed_values() {
        let recorder = Keys::default();
        let seen = recorder.0.clone();
        ::metrics::with_local_recorder(&recorder, || {
            bearer(Ok(()));
            bearer(Err(&AuthError::InvalidToken("expired".into())));
            token_request(Some("password"), Some("unsupported_grant_type"));
            token_request(Some("refresh_token"), None);
            item("tool", None, "hidden");
            item("tool", Some("add"), "allowed");
        });
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "a3mcp_bearer_requests_total{outcome=accepted}",
                "a3mcp_bearer_requests_total{outcome=invalid_token}",
                "a3mcp_token_requests_total{grant_type=other,result=unsupported_grant_type}",
                "a3mcp_token_requests_total{grant_type=refresh_token,result=ok}",
                "a3mcp_item_requests_total{kind=tool,name=(unlisted),outcome=hidden}",
                "a3mcp_item_requests_total{kind=tool,name=add,outcome=allowed}",
            ]
        );
    }
}
