//! Client ID Metadata Documents: a host whose `client_id` is an https URL is described by the
//! JSON document at that URL ([MCP authorization 2025-11-25, "Client ID Metadata
//! Documents"](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization#client-id-metadata-documents),
//! [draft-ietf-oauth-client-id-metadata-document-00](https://datatracker.ietf.org/doc/html/draft-ietf-oauth-client-id-metadata-document-00)).
//!
//! Nothing is registered: the bridge fetches the document with the hardened [`fetcher`], checks
//! it ([`validate`]: its `client_id` equals the URL, `client_name` and `redirect_uris` present, no
//! secret, a public client) and keeps the result in the store's
//! [`ClientMetadata`](super::store::Namespace::ClientMetadata) namespace for as long as its
//! `Cache-Control` says, within bounds, so that every replica uses one fetch; a failure is
//! remembered for [`FAILURE_TTL`], so that a caller cannot make the bridge fetch one URL over and
//! over. Fetches of documents not in the cache are rate-limited per caller, like registrations,
//! and the cache holds at most [`max_cached_documents`](super::DcrBridgeBuilder::max_cached_documents)
//! entries; the operator may accept documents from listed hosts only (`CIMD_ALLOWED_HOSTS`).

pub(crate) mod address;
pub(crate) mod fetcher;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::Inner;
use super::register::{RegisteredClient, check_redirect_uri};
use super::store::{Namespace, StoreError};
use crate::oauth::html::visible_text;
use fetcher::FetchError;

/// Longest client id URL accepted.
const MAX_URL_LEN: usize = 2048;
/// How long a failed fetch or a refused document is remembered.
pub(crate) const FAILURE_TTL: Duration = Duration::from_secs(30);
/// Bounds on how long a valid document is kept, whatever its `Cache-Control` says; and how long
/// without one.
pub(crate) const MIN_TTL: Duration = Duration::from_secs(60);
pub(crate) const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Whether `client_id` names a metadata document (a URL) rather than a registration: our
/// registered client ids are random base64url strings, which never contain `:`.
pub(crate) fn is_url(client_id: &str) -> bool {
    client_id.starts_with("https:") || client_id.starts_with("http:")
}

/// `client_id` as the URL of a metadata document, or why it cannot be one: https, a host, a path
/// other than `/`, no fragment, no user info, no dot segments
/// ([draft-ietf-oauth-client-id-metadata-document-00 §3](https://www.ietf.org/archive/id/draft-ietf-oauth-client-id-metadata-document-00.html#section-3)),
/// and written in the normalized form the document's `client_id` must repeat. Under the
/// development switch, `http://` to a loopback IP literal too.
pub(crate) fn document_url(client_id: &str, allow_loopback: bool) -> Result<Url, &'static str> {
    if client_id.len() > MAX_URL_LEN {
        return Err("the client id URL is too long");
    }
    let url = Url::parse(client_id).map_err(|_| "the client id is not a valid URL")?;
    if client_id.contains('#') {
        return Err("the client id URL must not contain a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the client id URL must not contain user info");
    }
    let raw_path = client_id
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("");
    let raw_path = raw_path.split(['?', '#']).next().unwrap_or("");
    let dot = |seg: &str| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    };
    if raw_path.split('/').any(dot) {
        return Err("the client id URL must not contain dot segments");
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err("the client id URL must have a path (https://host/path)");
    }
    let loopback_literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback && loopback_literal => {}
        _ => return Err("the client id URL must use https"),
    }
    if url.as_str() != client_id {
        return Err("the client id URL is not in normalized form (lowercase host, no default port)");
    }
    Ok(url)
}

/// The host a document was fetched from, as the consent page names it: `host[:port]`.
pub(crate) fn publisher(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// Checks a fetched document against the URL it was fetched from (`client_id`) and turns it into
/// the client it describes; the error is a sentence for the user's error page.
pub(crate) fn validate(client_id: &str, body: &[u8]) -> Result<RegisteredClient, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| "the document is not JSON".to_owned())?;
    let Value::Object(doc) = doc else {
        return Err("the document is not a JSON object".into());
    };
    let string = |name: &str| doc.get(name).and_then(Value::as_str);
    let strings = |name: &str| -> Result<Option<Vec<String>>, String> {
        match doc.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| format!("{name} must be a list of strings")),
            Some(_) => Err(format!("{name} must be a list of strings")),
        }
    };
    if string("client_id") != Some(client_id) {
        return Err("the document's client_id is not the URL it was fetched from".into());
    }
    if doc.contains_key("client_secret") {
        return Err(
            "the document carries a client_secret, which a published document cannot keep secret".into(),
        );
    }
    if let Some(keys) = doc
        .get("jwks")
        .and_then(|j| j.get("keys"))
        .and_then(Value::as_array)
    {
        const PRIVATE: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];
        let secret = keys.iter().any(|k| {
            k.get("kty").and_then(Value::as_str) == Some("oct") || PRIVATE.iter().any(|m| k.get(m).is_some())
        });
        if secret {
            return Err("the document's jwks carries a symmetric or private key".into());
        }
    }
    // Public clients only. A document may offer several methods (a non-standard
    // `token_endpoint_auth_methods_supported`); `none` is chosen when it is among them.
    let method = string("token_endpoint_auth_method").unwrap_or("none");
    let offers_none =
        strings("token_endpoint_auth_methods_supported")?.is_some_and(|m| m.iter().any(|m| m == "none"));
    if method != "none" && !offers_none {
        return Err(format!(
            "the document asks for client authentication {method:?}; this server supports public clients (none) only"
        ));
    }
    let redirect_uris = strings("redirect_uris")?
        .filter(|r| !r.is_empty())
        .ok_or("the document has no redirect_uris")?;
    if redirect_uris.len() > 10 {
        return Err("the document lists more than 10 redirect_uris".into());
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri).map_err(|why| format!("a redirect URI is refused: {why}"))?;
    }
    let client_name = match string("client_name") {
        None => return Err("the document has no client_name".into()),
        Some(n) if n.chars().count() > 200 => return Err("the document's client_name is too long".into()),
        Some(n) => visible_text(n),
    };
    if client_name.is_empty() {
        return Err("the document's client_name has no visible characters".into());
    }
    let grant_types = strings("grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err("the document's grant_types do not include authorization_code".into());
    }
    // Grants this server does not offer (device code, JWT bearer) are ignored, not refused.
    let grant_types = grant_types
        .into_iter()
        .filter(|g| g == "authorization_code" || g == "refresh_token")
        .collect();
    if strings("response_types")?.is_some_and(|r| !r.iter().any(|r| r == "code")) {
        return Err("the document's response_types do not include code".into());
    }
    let application_type = match string("application_type") {
        Some("web") => "web",
        _ => "native",
    };
    let client_uri = string("client_uri")
        .filter(|u| u.len() <= MAX_URL_LEN && Url::parse(u).is_ok_and(|u| u.scheme() == "https"))
        .map(str::to_owned);
    Ok(RegisteredClient {
        client_id: client_id.to_owned(),
        client_id_issued_at: crate::oauth::unix_now(),
        client_name: Some(client_name),
        client_uri,
        redirect_uris,
        grant_types,
        response_types: vec!["code".into()],
        token_endpoint_auth_method: "none".into(),
        application_type: application_type.into(),
        // A published document is for every server: scopes of other servers are not ours.
        scope: None,
    })
}

/// How long a valid document is kept: its `Cache-Control` `max-age` within [`MIN_TTL`] and
/// [`MAX_TTL`], [`MIN_TTL`] for `no-store`/`no-cache`, [`DEFAULT_TTL`] without a lifetime.
pub(crate) fn cache_ttl(cache_control: Option<&str>) -> Duration {
    let Some(value) = cache_control else {
        return DEFAULT_TTL;
    };
    let mut ttl = None;
    for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "no-cache" {
            return MIN_TTL;
        }
        if let Some(age) = directive.strip_prefix("max-age=") {
            ttl = age.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    ttl.map_or(DEFAULT_TTL, |t| t.clamp(MIN_TTL, MAX_TTL))
}

/// What the cache remembers of a URL.
#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Cached {
    Valid { client: RegisteredClient },
    Refused { reason: String },
    Unreachable { reason: String },
}

/// Why a URL client id cannot be used.
#[derive(Debug)]
pub(crate) enum DocumentError {
    /// The URL, the policy or the document says no (a sentence for the user).
    Refused(String),
    /// The document could not be fetched right now.
    Unreachable(String),
    /// The caller fetched too many documents not in the cache.
    TooManyFetches,
    Store(StoreError),
}

/// Who makes a request, for the fetch rate limit.
pub(crate) struct Requester {
    pub ip: IpAddr,
    pub origin: Option<String>,
}

/// The client a URL client id names: from the cache, or fetched (rate-limited per `requester`),
/// validated and cached. Returns the client and the host that published it.
pub(crate) async fn lookup(
    inner: &Inner,
    client_id: &str,
    requester: &Requester,
) -> Result<(RegisteredClient, String), DocumentError> {
    let policy = &inner.client_registration;
    if !policy.cimd_enabled() || inner.fetcher.tls_error().is_some() {
        return Err(DocumentError::Refused(
            "this server does not accept URL client ids (Client ID Metadata Documents)".into(),
        ));
    }
    let url = document_url(client_id, policy.cimd_allow_loopback())
        .map_err(|why| DocumentError::Refused(why.into()))?;
    let publisher = publisher(&url);
    if !policy.cimd_host_allowed(url.host_str().unwrap_or_default()) {
        return Err(DocumentError::Refused(format!(
            "this server does not accept applications published by {publisher}"
        )));
    }
    let key = crate::oauth::sha256_b64url(client_id);
    let store = &inner.store;
    match store
        .get_json::<Cached>(Namespace::ClientMetadata, &key)
        .await
        .map_err(DocumentError::Store)?
    {
        Some(Cached::Valid { client }) => return Ok((client, publisher)),
        Some(Cached::Refused { reason }) => return Err(DocumentError::Refused(reason)),
        Some(Cached::Unreachable { reason }) => return Err(DocumentError::Unreachable(reason)),
        None => {}
    }
    if !inner
        .metadata_fetch_limiter
        .take(requester.ip, requester.origin.as_deref())
        .await
        .map_err(DocumentError::Store)?
    {
        return Err(DocumentError::TooManyFetches);
    }
    let (cached, ttl) = match inner.fetcher.get(&url).await {
        Ok(fetched) => match validate(client_id, &fetched.body) {
            Ok(client) => (
                Cached::Valid { client },
                cache_ttl(fetched.cache_control.as_deref()),
            ),
            Err(reason) => (Cached::Refused { reason }, FAILURE_TTL),
        },
        Err(
            e @ (FetchError::NotPublic(_)
            | FetchError::Insecure
            | FetchError::Redirect(_)
            | FetchError::TooLarge),
        ) => (
            Cached::Refused {
                reason: e.to_string(),
            },
            FAILURE_TTL,
        ),
        Err(e) => (
            Cached::Unreachable {
                reason: e.to_string(),
            },
            FAILURE_TTL,
        ),
    };
    tracing::info!(
        client_id,
        outcome = match &cached {
            Cached::Valid { .. } => "valid",
            Cached::Refused { reason } | Cached::Unreachable { reason } => reason.as_str(),
        },
        "fetched a client metadata document"
    );
    // A full cache keeps its entries; this result serves this request only.
    match store.count(Namespace::ClientMetadata).await {
        Ok(n) if n < inner.limits.max_cached_documents => {
            store
                .put_json(Namespace::ClientMetadata, &key, &cached, Some(ttl))
                .await
                .map_err(DocumentError::Store)?;
        }
        Ok(_) => tracing::warn!(
            max = inner.limits.max_cached_documents,
            "the client metadata document cache is full; not caching"
        ),
        Err(e) => return Err(DocumentError::Store(e)),
    }
    match cached {
        Cached::Valid { client } => Ok((client, publisher)),
        Cached::Refused { reason } => Err(DocumentError::Refused(reason)),
        Cached::Unreachable { reason } => Err(DocumentError::Unreachable(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn which_client_ids_are_document_urls() {
        for ok in [
            "https://vscode.dev/oauth/client-metadata.json",
            "https://claude.ai/oauth/claude-code-client-metadata",
            "https://chatgpt.com/oauth/codex/client.json",
            "https://example.com:8443/c?v=1",
        ] {
            assert_eq!(document_url(ok, false).map(|u| u.to_string()), Ok(ok.to_owned()));
        }
        for (bad, why) in [
            ("http://vscode.dev/oauth/client-metadata.json", "must use https"),
            ("https://vscode.dev", "must have a path"),
            ("https://vscode.dev/", "must have a path"),
            ("https://vscode.dev/a#frag", "fragment"),
            ("https://user@vscode.dev/a", "user info"),
            ("https://user:pw@vscode.dev/a", "user info"),
            ("https://vscode.dev/a/../b", "dot segments"),
            ("https://vscode.dev/./b", "dot segments"),
            ("https://vscode.dev/a/%2E%2e/b", "dot segments"),
            ("https://VSCODE.dev/a", "normalized"),
            ("https://vscode.dev:443/a", "normalized"),
            ("https://vscode.dev/a b", "normalized"),
            ("http://127.0.0.1:8123/doc.json", "must use https"),
            ("https:nothing", "must have a path"),
        ] {
            let e = document_url(bad, false).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = format!("https://vscode.dev/{}", "a".repeat(MAX_URL_LEN));
        assert!(document_url(&long, false).is_err());
        // The development switch admits http to loopback IP literals, nothing else.
        assert!(document_url("http://127.0.0.1:8123/doc.json", true).is_ok());
        assert!(document_url("http://[::1]:8123/doc.json", true).is_ok());
        assert!(document_url("http://localhost:8123/doc.json", true).is_err());
        assert!(document_url("http://10.0.0.1:8123/doc.json", true).is_err());
        assert!(is_url("https://vscode.dev/x") && !is_url("d2Jx-a_1"));
    }

    fn doc(extra: Value) -> Vec<u8> {
        let mut d = json!({
            "client_id": "https://vscode.dev/oauth/client-metadata.json",
            "client_name": "Visual Studio Code",
            "redirect_uris": ["https://vscode.dev/redirect", "http://127.0.0.1:33418/"],
        });
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        serde_json::to_vec(&d).unwrap()
    }

    const VSCODE: &str = "https://vscode.dev/oauth/client-metadata.json";

    #[test]
    fn documents_are_checked() {
        let client = validate(
            VSCODE,
            &doc(json!({
                "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
                "application_type": "native", "token_endpoint_auth_method": "none",
            })),
        )
        .unwrap();
        assert_eq!(client.client_id, VSCODE);
        assert_eq!(client.grant_types, ["authorization_code", "refresh_token"]);
        assert!(client.allows_redirect("http://127.0.0.1:50000/"));
        // Several methods offered: none is chosen.
        let offered = validate(
            VSCODE,
            &doc(json!({"token_endpoint_auth_method": "private_key_jwt",
                        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
                        "jwks_uri": "https://vscode.dev/jwks.json"})),
        )
        .unwrap();
        assert_eq!(offered.token_endpoint_auth_method, "none");
        for (extra, why) in [
            (
                json!({"client_id": "https://vscode.dev/other.json"}),
                "not the URL",
            ),
            (
                json!({"client_id": "https://vscode.dev/oauth/client-metadata.json/"}),
                "not the URL",
            ),
            (json!({"client_secret": "s3cret"}), "client_secret"),
            (
                json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
                "symmetric or private",
            ),
            (
                json!({"jwks": {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "y"}]}}),
                "symmetric or private",
            ),
            (
                json!({"token_endpoint_auth_method": "client_secret_post"}),
                "public clients",
            ),
            (
                json!({"token_endpoint_auth_method": "private_key_jwt"}),
                "public clients",
            ),
            (json!({"redirect_uris": []}), "no redirect_uris"),
            (json!({"redirect_uris": null}), "no redirect_uris"),
            (
                json!({"redirect_uris": "https://vscode.dev/redirect"}),
                "list of strings",
            ),
            (
                json!({"redirect_uris": ["javascript:alert(1)"]}),
                "redirect URI is refused",
            ),
            (
                json!({"redirect_uris": ["http://evil.example/cb"]}),
                "redirect URI is refused",
            ),
            (json!({"client_name": null}), "no client_name"),
            (json!({"client_name": "\u{202e}\u{200b}"}), "no visible"),
            (json!({"grant_types": ["refresh_token"]}), "authorization_code"),
            (json!({"response_types": ["token"]}), "include code"),
        ] {
            let e = validate(VSCODE, &doc(extra.clone())).unwrap_err();
            assert!(e.contains(why), "{extra}: {e}");
        }
        assert!(
            validate(VSCODE, b"<html>hello</html>")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            validate(VSCODE, b"[1]")
                .unwrap_err()
                .contains("not a JSON object")
        );
    }

    #[test]
    fn cache_lifetimes_are_bounded() {
        assert_eq!(cache_ttl(None), DEFAULT_TTL);
        assert_eq!(cache_ttl(Some("public, max-age=7200")), Duration::from_secs(7200));
        assert_eq!(cache_ttl(Some("max-age=5")), MIN_TTL);
        assert_eq!(cache_ttl(Some("max-age=99999999")), MAX_TTL);
        assert_eq!(cache_ttl(Some("no-store")), MIN_TTL);
        assert_eq!(cache_ttl(Some("max-age=600, no-cache")), MIN_TTL);
        assert_eq!(cache_ttl(Some("max-age=banana")), DEFAULT_TTL);
    }
}
