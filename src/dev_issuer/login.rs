//! The sign-in form that `GET /authorize` shows, `POST /login` that checks its e-mail and
//! password, and the browser session that lets a later authorization skip the form (unless it
//! asks for `prompt=login`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::builder::UserConfig;
use super::pages::{error_page, login_page};
use super::state::{AuthRequest, Pending, Session, Shared};
use crate::oauth::form::Params;
use crate::oauth::{ct_eq, random_token, sha256_b64url};

/// How long a login form stays usable.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// How long the browser session that skips the login form lasts.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Wrong passwords allowed on one login form before it is withdrawn.
const MAX_LOGIN_FAILURES: u32 = 5;

impl Shared {
    /// Checks an e-mail and password, in time independent of which one is wrong.
    pub(super) fn check_password(&self, email: &str, password: &str) -> Option<UserConfig> {
        let user = self.user(email);
        let expected = user.as_ref().map_or("\u{0}no such user", |u| u.password.as_str());
        let ok = ct_eq(expected, password);
        user.filter(|_| ok)
    }
}

/// Keeps a validated authorization request until its sign-in form comes back, and shows the form.
pub(super) fn sign_in_form(s: &Shared, request: AuthRequest) -> Response {
    let id = random_token();
    let now = Instant::now();
    {
        let mut store = s.store();
        store.prune(now);
        store.pending.insert(
            id.clone(),
            Pending {
                request: request.clone(),
                expires: now + PENDING_TTL,
                failures: 0,
            },
        );
    }
    login_page(StatusCode::OK, &id, &request, "", None)
}

/// `POST /login`.
pub(super) async fn login(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match Params::from_request(&headers, &body) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let id = params.get("request").unwrap_or("");
    let email = params.get("email").unwrap_or("");
    let password = params.get("password").unwrap_or("");
    let request = {
        let mut store = s.store();
        store.prune(Instant::now());
        match store.pending.get(id) {
            Some(p) => p.request.clone(),
            None => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "this sign-in request is unknown, used or expired; start again from the application",
                );
            }
        }
    };
    let Some(user) = s.check_password(email, password) else {
        let mut store = s.store();
        let withdrawn = match store.pending.get_mut(id) {
            Some(p) => {
                p.failures += 1;
                p.failures >= MAX_LOGIN_FAILURES
            }
            None => true,
        };
        if withdrawn {
            store.pending.remove(id);
            return error_page(
                StatusCode::UNAUTHORIZED,
                "too many failed sign-in attempts; start again",
            );
        }
        return login_page(
            StatusCode::UNAUTHORIZED,
            id,
            &request,
            email,
            Some("Wrong e-mail or password."),
        );
    };
    // Single use: whoever removes it first proceeds.
    if s.store().pending.remove(id).is_none() {
        return error_page(StatusCode::BAD_REQUEST, "this sign-in request was already used");
    }
    s.counters.logins.fetch_add(1, Ordering::SeqCst);
    let session = random_token();
    let now = Instant::now();
    s.store().sessions.insert(
        sha256_b64url(&session),
        Session {
            email: user.email.clone(),
            expires: now + SESSION_TTL,
        },
    );
    let mut response = s.approve(request, user.email);
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        s.cookie_name,
        SESSION_TTL.as_secs()
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("ascii cookie"),
    );
    response
}

/// The e-mail of the browser's live session, if any (and if the user still exists).
pub(super) fn session_user(s: &Shared, headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == s.cookie_name)
        .map(|(_, value)| value.to_owned())?;
    let email = {
        let store = s.store();
        let session = store.sessions.get(&sha256_b64url(&value))?;
        if session.expires <= Instant::now() {
            return None;
        }
        session.email.clone()
    };
    s.user(&email).map(|u| u.email)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Reply, encode, get, post, send};
    use super::super::{DEFAULT_USER_EMAIL, DEFAULT_USER_PASSWORD, DevIssuer};

    /// The sign-in form of a fresh authorization request: its page, and the id in it.
    async fn sign_in_form(dev: &DevIssuer) -> (Reply, String) {
        let url = dev.authorization_url("st", &DevIssuer::pkce_challenge(&"v".repeat(43)));
        let page = send(dev, get(url.strip_prefix(dev.url()).unwrap())).await;
        assert_eq!(page.status, 200);
        let id = page.body.split("name=\"request\" value=\"").nth(1).unwrap();
        let id = id.split('"').next().unwrap().to_owned();
        (page, id)
    }

    /// `POST /login` read any body as a form; it now requires the form media type, as the token
    /// and revocation endpoints did (the shared `Params::from_request`).
    #[tokio::test]
    async fn the_sign_in_must_be_form_encoded() {
        let dev = DevIssuer::start().await.unwrap();
        let (_, id) = sign_in_form(&dev).await;
        let body = encode(&[
            ("request", &id),
            ("email", DEFAULT_USER_EMAIL),
            ("password", DEFAULT_USER_PASSWORD),
        ]);
        let reply = send(&dev, post("/login", "text/plain", body.clone())).await;
        assert_eq!(reply.status, 400);
        assert!(!reply.headers.contains_key("set-cookie"));
        let reply = send(&dev, post("/login", "application/x-www-form-urlencoded", body)).await;
        assert_eq!(reply.status, 303);
        assert!(reply.location_query().contains_key("code"));
        assert!(reply.headers.contains_key("set-cookie"));
    }

    /// The issuer's own `random_token` took a length, and the sign-in form's id (like the
    /// default client's secret) had 192 bits; every random value now has the shared 256.
    #[tokio::test]
    async fn sign_in_ids_have_256_bits() {
        let dev = DevIssuer::start().await.unwrap();
        let (_, id) = sign_in_form(&dev).await;
        assert_eq!(id.len(), 43);
    }
}
