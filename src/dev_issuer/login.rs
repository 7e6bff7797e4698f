//! `POST /login`: the e-mail and password of the sign-in form, and the browser session that
//! lets a later authorization skip the form.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::builder::UserConfig;
use super::helpers::{Params, hash, random_token, secrets_equal};
use super::pages::{error_page, login_page};
use super::state::{Session, Shared};

/// How long a login form stays usable.
pub(super) const PENDING_TTL: Duration = Duration::from_secs(600);
/// How long the browser session that skips the login form lasts.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Wrong passwords allowed on one login form before it is withdrawn.
pub(super) const MAX_LOGIN_FAILURES: u32 = 5;

impl Shared {
    /// Checks an e-mail and password, in time independent of which one is wrong.
    pub(super) fn check_password(&self, email: &str, password: &str) -> Option<UserConfig> {
        let user = self.user(email);
        let expected = user.as_ref().map_or("\u{0}no such user", |u| u.password.as_str());
        let ok = secrets_equal(expected, password);
        user.filter(|_| ok)
    }
}

pub(super) async fn login(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let params = match Params::parse(&body) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
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
    let session = random_token(32);
    let now = Instant::now();
    s.store().sessions.insert(
        hash(&session),
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
        let session = store.sessions.get(&hash(&value))?;
        if session.expires <= Instant::now() {
            return None;
        }
        session.email.clone()
    };
    s.user(&email).map(|u| u.email)
}
