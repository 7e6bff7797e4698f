//! The sign-in form that `GET /authorize` shows, `POST /login` that checks its e-mail and
//! password, and the browser session that lets a later authorization skip the form (unless it
//! asks for `prompt=login`).
//!
//! `POST /login` is refused unless it comes from the issuer's own page (`Origin` and
//! `Sec-Fetch-Site`): otherwise any page, on any port of this host too, could post the form of a
//! sign-in it started itself with its own e-mail and password, and sign the visitor's browser in
//! as itself ([login CSRF](https://datatracker.ietf.org/doc/html/rfc6749#section-10.12)), so that
//! the visitor's next authorization is silently the attacker's account. No cookie can tell the
//! pages apart, since any page of the host can set one. Password guessing is bounded per form
//! ([`MAX_LOGIN_FAILURES`]) and per account ([`MAX_ACCOUNT_FAILURES`] in [`FAILURE_WINDOW`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::builder::UserConfig;
use super::pages::{error_page, login_page};
use super::state::{AuthRequest, Pending, Session, Shared, Store};
use crate::oauth::form::Params;
use crate::oauth::html::same_origin_post;
use crate::oauth::{ct_eq, random_token, sha256_b64url};

/// How long a login form stays usable.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Sign-in forms open at once. Opening one needs no password, so without a bound a script could
/// fill memory with them; when full, new forms are refused (503) until forms expire or complete,
/// and the forms already open keep working.
const MAX_PENDING_SIGN_INS: usize = 1_000;
/// How long the browser session that skips the login form lasts.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Wrong passwords allowed on one login form before it is withdrawn.
const MAX_LOGIN_FAILURES: u32 = 5;
/// Wrong passwords for one account, over every form, after which it cannot sign in until the
/// oldest of them is [`FAILURE_WINDOW`] old: a script guesses at most this many passwords in
/// that time, however many forms it opens.
pub(super) const MAX_ACCOUNT_FAILURES: usize = 10;
/// How long a wrong password counts against its account.
pub(super) const FAILURE_WINDOW: Duration = Duration::from_secs(300);

impl Shared {
    /// Checks an e-mail and password, in time independent of which one is wrong.
    pub(super) fn check_password(&self, email: &str, password: &str) -> Option<UserConfig> {
        let user = self.user(email);
        let expected = user.as_ref().map_or("\u{0}no such user", |u| u.password.as_str());
        let ok = ct_eq(expected, password);
        user.filter(|_| ok)
    }
}

impl Store {
    /// How long the account `email` (as configured) must wait before signing in again, if it
    /// has had too many wrong passwords.
    fn account_locked(&mut self, email: &str, now: Instant) -> Option<Duration> {
        self.prune(now);
        let failures = self.failed_sign_ins.get(email)?;
        (failures.len() >= MAX_ACCOUNT_FAILURES)
            .then(|| {
                failures
                    .front()
                    .map(|first| FAILURE_WINDOW.saturating_sub(now - *first))
            })
            .flatten()
    }

    /// Counts a wrong password against the account `email` (as configured).
    fn account_failed(&mut self, email: &str, now: Instant) {
        let failures = self.failed_sign_ins.entry(email.to_owned()).or_default();
        failures.push_back(now);
        while failures.len() > MAX_ACCOUNT_FAILURES {
            failures.pop_front();
        }
    }
}

/// Keeps a validated authorization request until its sign-in form comes back, and shows the form.
pub(super) fn sign_in_form(s: &Shared, request: AuthRequest) -> Response {
    let id = random_token();
    let now = Instant::now();
    {
        let mut store = s.store();
        store.prune(now);
        if store.pending.len() >= MAX_PENDING_SIGN_INS {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins are in progress. Try again in a few minutes.",
            );
        }
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
    if !same_origin_post(&headers, s.handle.url()) {
        return error_page(
            StatusCode::FORBIDDEN,
            "this sign-in was not submitted from this issuer's own page",
        );
    }
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
    // A locked account is refused whatever the password, so that guessing on learns nothing.
    let account = s.user(email).map(|u| u.email);
    if let Some(account) = &account
        && let Some(wait) = s.store().account_locked(account, Instant::now())
    {
        let mut refused = error_page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many wrong passwords for this account; try again in {} s",
                wait.as_secs().max(1)
            ),
        );
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        return refused;
    }
    let Some(user) = s.check_password(email, password) else {
        let mut store = s.store();
        if let Some(account) = &account {
            store.account_failed(account, Instant::now());
        }
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

    /// Ten wrong passwords lock an account until the oldest of them is five minutes old; then
    /// one more guess is allowed per wrong password that ages out, never a fresh burst of ten.
    #[test]
    fn wrong_passwords_lock_an_account_until_they_age_out() {
        use super::super::state::Store;
        use super::{FAILURE_WINDOW, MAX_ACCOUNT_FAILURES};
        use std::time::{Duration, Instant};

        let mut store = Store::default();
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        for i in 0..MAX_ACCOUNT_FAILURES as u32 {
            assert_eq!(store.account_locked("a@test.com", t0 + i * second), None);
            store.account_failed("a@test.com", t0 + i * second);
        }
        let after = t0 + 10 * second;
        assert_eq!(
            store.account_locked("a@test.com", after),
            Some(FAILURE_WINDOW - 10 * second)
        );
        assert_eq!(store.account_locked("b@test.com", after), None, "per account");
        // The first wrong password ages out: one more guess, then locked again.
        let later = t0 + FAILURE_WINDOW;
        assert_eq!(store.account_locked("a@test.com", later), None);
        store.account_failed("a@test.com", later);
        assert_eq!(store.account_locked("a@test.com", later), Some(second));
        // All of them age out, and the account's entry is dropped.
        let much_later = later + FAILURE_WINDOW;
        assert_eq!(store.account_locked("a@test.com", much_later), None);
        assert!(store.failed_sign_ins.is_empty());
    }

    /// Opening a sign-in form needs no password: a script that opens forms in a loop gets 503
    /// once `MAX_PENDING_SIGN_INS` are open, and a form opened before still signs its user in.
    #[tokio::test]
    async fn open_sign_in_forms_are_bounded_and_earlier_forms_keep_working() {
        let dev = DevIssuer::start().await.unwrap();
        let (_, first) = sign_in_form(&dev).await;
        for _ in 1..super::MAX_PENDING_SIGN_INS {
            sign_in_form(&dev).await;
        }
        let url = dev.authorization_url("st", &DevIssuer::pkce_challenge(&"v".repeat(43)));
        let refused = send(&dev, get(url.strip_prefix(dev.url()).unwrap())).await;
        assert_eq!(refused.status, 503);
        assert!(refused.body.contains("Too many sign-ins"), "{}", refused.body);
        let body = encode(&[
            ("request", &first),
            ("email", DEFAULT_USER_EMAIL),
            ("password", DEFAULT_USER_PASSWORD),
        ]);
        let reply = send(&dev, post("/login", "application/x-www-form-urlencoded", body)).await;
        assert_eq!(reply.status, 303);
        assert!(reply.location_query().contains_key("code"));
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
