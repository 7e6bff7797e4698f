//! The leg towards A3: the bridge is one confidential client (`client_secret_post`, PKCE S256,
//! one fixed callback, RFC 8707 `resource`), built on the `oauth2` crate over our reqwest client.

use std::time::{Duration, Instant};

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, RevocationUrl, Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::discovery::ProviderMetadata;
use crate::oauth::unix_now;

/// Largest token-endpoint response read from A3.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A3's tokens for one grant; kept only sealed (see `Keys::seal`).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct UpstreamTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds; from `expires_in`, else the JWT's `exp` (filled in by the caller).
    pub expires_at: u64,
    /// Unix seconds when A3 issued them (0 in grants stored before this field existed).
    #[serde(default)]
    pub obtained_at: u64,
}

impl UpstreamTokens {
    /// Whether the access token should be refreshed before use at `now`: within 30 s of expiry,
    /// or within a quarter of its lifetime when that is shorter, so that short-lived A3 tokens
    /// are not refreshed on every request.
    pub fn refresh_due(&self, now: u64) -> bool {
        let lifetime = self.expires_at.saturating_sub(self.obtained_at);
        let margin = if self.obtained_at == 0 {
            REFRESH_MARGIN
        } else {
            REFRESH_MARGIN.min(lifetime / 4)
        };
        self.expires_at <= now.saturating_add(margin)
    }
}

/// Refresh A3's access token at most this long before it expires.
const REFRESH_MARGIN: u64 = 30;

/// Why a call to A3 failed. Messages never carry tokens or the client secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// A3 refused the grant (code or refresh token invalid, expired or revoked).
    #[error("the authorization server refused the grant ({0})")]
    Rejected(String),
    /// A3 could not be reached or answered unexpectedly.
    #[error("the authorization server is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

#[derive(Clone)]
pub(crate) struct Upstream {
    client: Client,
    revocation: Option<RevocationUrl>,
    client_secret: String,
    http: reqwest::Client,
    pub(crate) metadata: ProviderMetadata,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("issuer", &self.metadata.issuer)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub(crate) fn new(
        metadata: ProviderMetadata,
        client_id: &str,
        client_secret: &str,
        callback: &str,
    ) -> Result<Self, String> {
        let auth = metadata
            .authorization_endpoint
            .clone()
            .ok_or("A3 discovery has no authorization_endpoint")?;
        let token = metadata
            .token_endpoint
            .clone()
            .ok_or("A3 discovery has no token_endpoint")?;
        let client = BasicClient::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(client_secret.to_owned()))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(AuthUrl::new(auth).map_err(|e| e.to_string())?)
            .set_token_uri(TokenUrl::new(token).map_err(|e| e.to_string())?)
            .set_redirect_uri(RedirectUrl::new(callback.to_owned()).map_err(|e| e.to_string())?);
        let revocation = match &metadata.revocation_endpoint {
            Some(url) => Some(RevocationUrl::new(url.clone()).map_err(|e| e.to_string())?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("a3-mcp-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Upstream {
            client,
            revocation,
            client_secret: client_secret.to_owned(),
            http,
            metadata,
        })
    }

    /// A3's authorization URL for one transaction, and the PKCE verifier to keep with it.
    pub(crate) fn authorize_url(&self, state: &str, scope: &str, resource: &str) -> (String, String) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut request = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .set_pkce_challenge(challenge)
            .add_extra_param("resource", resource.to_owned());
        for s in scope.split_ascii_whitespace() {
            request = request.add_scope(Scope::new(s.to_owned()));
        }
        let (url, _) = request.url();
        (url.to_string(), verifier.secret().clone())
    }

    /// Redeems A3's code (client_secret_post, PKCE verifier, resource).
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        resource: &str,
    ) -> Result<UpstreamTokens, UpstreamError> {
        let client_http = self.http.clone();
        let http = move |req| send(client_http.clone(), req);
        let started = Instant::now();
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .add_extra_param("resource", resource.to_owned())
            .request_async(&http)
            .await
            .map_err(map_token_error);
        record("token_code", &response, started);
        Ok(tokens(&response?, None))
    }

    /// Refreshes A3's tokens; keeps the old refresh token when A3 does not rotate it.
    pub(crate) async fn refresh(
        &self,
        refresh_token: &str,
        resource: &str,
    ) -> Result<UpstreamTokens, UpstreamError> {
        let client_http = self.http.clone();
        let http = move |req| send(client_http.clone(), req);
        let rt = RefreshToken::new(refresh_token.to_owned());
        let started = Instant::now();
        let response = self
            .client
            .exchange_refresh_token(&rt)
            .add_extra_param("resource", resource.to_owned())
            .request_async(&http)
            .await
            .map_err(map_token_error);
        record("token_refresh", &response, started);
        Ok(tokens(&response?, Some(refresh_token)))
    }

    /// Revokes `tokens` at A3 (the refresh token, else the access token) with client_secret_post,
    /// when A3 advertises a revocation endpoint; whether A3 confirmed it. Failures are logged,
    /// never surfaced as errors: our own revocation already took effect. (oauth2's revocation
    /// request insists on https, which rules out loopback development issuers, so this is a
    /// plain RFC 7009 form post.)
    pub(crate) async fn revoke(&self, tokens: &UpstreamTokens) -> bool {
        let Some(url) = &self.revocation else {
            return false;
        };
        let (token, hint) = match &tokens.refresh_token {
            Some(rt) => (rt.as_str(), "refresh_token"),
            None => (tokens.access_token.as_str(), "access_token"),
        };
        let form = [
            ("token", token),
            ("token_type_hint", hint),
            ("client_id", self.client.client_id().as_str()),
            ("client_secret", self.client_secret.as_str()),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let started = Instant::now();
        let result = self
            .http
            .post(url.url().clone())
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        let outcome = match result {
            Ok(r) if r.status().is_success() => "ok",
            Ok(r) => {
                tracing::warn!(status = r.status().as_u16(), "A3 refused to revoke a token");
                "rejected"
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "revoking the A3 token failed");
                "error"
            }
        };
        crate::metrics::upstream("revocation", outcome, started);
        outcome == "ok"
    }
}

/// Counts one token request to A3: `ok`, `rejected` (A3 refused the grant) or `error`.
fn record<T>(endpoint: &'static str, result: &Result<T, UpstreamError>, started: Instant) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(UpstreamError::Rejected(_)) => "rejected",
        Err(UpstreamError::Unavailable(_)) => "error",
    };
    crate::metrics::upstream(endpoint, outcome, started);
}

/// Sends one oauth2 request with our reqwest client, reading at most `MAX_RESPONSE_BYTES`.
async fn send(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let url = parts.uri.to_string();
    let response = http
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(e.without_url().to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError("response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

fn tokens(response: &oauth2::basic::BasicTokenResponse, previous_refresh: Option<&str>) -> UpstreamTokens {
    let access_token = response.access_token().secret().clone();
    let expires_at = match response.expires_in() {
        Some(d) => crate::oauth::expiry_after(d),
        None => jwt_exp(&access_token).unwrap_or(unix_now() + 300),
    };
    UpstreamTokens {
        access_token,
        refresh_token: response
            .refresh_token()
            .map(|t| t.secret().clone())
            .or_else(|| previous_refresh.map(str::to_owned)),
        expires_at,
        obtained_at: unix_now(),
    }
}

/// The `exp` of a JWT, read without verification (only to schedule a refresh).
fn jwt_exp(token: &str) -> Option<u64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("exp")?.as_u64()
}

fn short_error<E: std::error::Error>(e: &E) -> String {
    // oauth2's errors may include the response body, which can contain tokens: keep the first line.
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

fn map_token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
) -> UpstreamError {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error() {
            // Only the grant itself being refused ends our grants; a refused client (a rotated
            // CLIENT_SECRET, say) is a configuration problem that must not wipe every grant.
            BasicErrorResponseType::InvalidGrant | BasicErrorResponseType::InvalidScope => {
                UpstreamError::Rejected(r.error().to_string())
            }
            other => UpstreamError::Unavailable(other.to_string()),
        },
        RequestTokenError::Request(e) => UpstreamError::Unavailable(short_error(&e)),
        RequestTokenError::Parse(_, _) => UpstreamError::Unavailable("unparseable token response".into()),
        RequestTokenError::Other(s) => UpstreamError::Unavailable(s.chars().take(200).collect()),
    }
}

#[cfg(test)]
mod refresh_tests {
    use super::UpstreamTokens;

    fn tokens(obtained_at: u64, expires_at: u64) -> UpstreamTokens {
        UpstreamTokens {
            access_token: String::new(),
            refresh_token: None,
            expires_at,
            obtained_at,
        }
    }

    #[test]
    fn refresh_margin_scales_with_short_lifetimes() {
        // One hour: refreshed in its last 30 s.
        assert!(!tokens(1000, 4600).refresh_due(4569));
        assert!(tokens(1000, 4600).refresh_due(4570));
        // Twenty seconds: not on every request, only in the last quarter (5 s).
        assert!(!tokens(1000, 1020).refresh_due(1001));
        assert!(!tokens(1000, 1020).refresh_due(1014));
        assert!(tokens(1000, 1020).refresh_due(1015));
        // Grants stored before `obtained_at` existed keep the fixed 30 s margin.
        assert!(tokens(0, 1020).refresh_due(1001));
        // Already expired: always due.
        assert!(tokens(1000, 1000).refresh_due(1000));
    }
}
