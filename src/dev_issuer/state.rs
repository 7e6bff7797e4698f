//! What a running development issuer holds: its configuration, its counters, and the store of
//! pending sign-ins, browser sessions, authorization codes and refresh tokens.
//!
//! Everything lives in memory. Sessions, codes and refresh tokens are keyed by the SHA-256 of the
//! value ([`crate::oauth::sha256_b64url`]), never by the value itself; expiry is on the monotonic
//! clock, so that lifetimes below a second (as tests use) work.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::builder::{ClientConfig, UserConfig};
use super::counters::Counters;
use crate::testing::IssuerHandle;

/// The settings of a started issuer (see [`DevIssuerBuilder`](super::DevIssuerBuilder)).
pub(super) struct Config {
    pub(super) resource: String,
    pub(super) scopes: Vec<String>,
    pub(super) context_claim: String,
    pub(super) access_ttl: Duration,
    pub(super) refresh_ttl: Duration,
    pub(super) code_ttl: Duration,
    pub(super) clients: Vec<ClientConfig>,
}

/// The state every endpoint shares.
pub(super) struct Shared {
    pub(super) handle: IssuerHandle,
    pub(super) config: Config,
    pub(super) users: Mutex<Vec<UserConfig>>,
    pub(super) cookie_name: String,
    pub(super) store: Mutex<Store>,
    pub(super) counters: Counters,
}

/// A validated authorization request.
#[derive(Clone)]
pub(super) struct AuthRequest {
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    /// Whether `redirect_uri` was in the request (then the token request must repeat it).
    pub(super) redirect_explicit: bool,
    pub(super) state: Option<String>,
    pub(super) code_challenge: String,
    pub(super) resource: String,
    pub(super) scope: Vec<String>,
}

/// An authorization request waiting for the sign-in form (keyed by the form's random id).
pub(super) struct Pending {
    pub(super) request: AuthRequest,
    pub(super) expires: Instant,
    pub(super) failures: u32,
}

/// A browser session: the user signed in, so that the next authorization skips the form.
pub(super) struct Session {
    pub(super) email: String,
    pub(super) expires: Instant,
}

/// An authorization code: single use; a second redemption revokes its grant.
pub(super) struct CodeEntry {
    pub(super) request: AuthRequest,
    pub(super) email: String,
    pub(super) grant: u64,
    pub(super) expires: Instant,
    pub(super) used: bool,
}

/// A live refresh token; rotated on every use.
pub(super) struct RefreshEntry {
    pub(super) client_id: String,
    pub(super) email: String,
    pub(super) scope: Vec<String>,
    pub(super) resource: String,
    pub(super) grant: u64,
    pub(super) expires: Instant,
}

#[derive(Default)]
pub(super) struct Store {
    pub(super) pending: HashMap<String, Pending>,
    pub(super) sessions: HashMap<String, Session>,
    pub(super) codes: HashMap<String, CodeEntry>,
    pub(super) refresh: HashMap<String, RefreshEntry>,
    /// Refresh tokens already rotated: presenting one again revokes its grant.
    pub(super) spent_refresh: HashMap<String, (u64, Instant)>,
    /// When each configured user's recent wrong passwords were tried (keyed by the user's
    /// e-mail as configured, so bounded by the number of users; see `login`).
    pub(super) failed_sign_ins: HashMap<String, VecDeque<Instant>>,
    pub(super) next_grant: u64,
}

impl Store {
    /// Drops everything expired.
    pub(super) fn prune(&mut self, now: Instant) {
        self.pending.retain(|_, p| p.expires > now);
        self.sessions.retain(|_, s| s.expires > now);
        self.codes.retain(|_, c| c.expires > now);
        self.refresh.retain(|_, r| r.expires > now);
        self.spent_refresh.retain(|_, (_, expires)| *expires > now);
        self.failed_sign_ins.retain(|_, failures| {
            failures.retain(|t| now.duration_since(*t) < super::login::FAILURE_WINDOW);
            !failures.is_empty()
        });
    }

    /// Revokes every refresh token of `grant` (a replayed code or refresh token).
    pub(super) fn revoke_grant(&mut self, grant: u64) {
        self.refresh.retain(|_, r| r.grant != grant);
    }
}

impl Shared {
    /// The store, even if a panicking request poisoned its lock.
    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured client `id`.
    pub(super) fn client(&self, id: &str) -> Option<&ClientConfig> {
        self.config.clients.iter().find(|c| c.id == id)
    }

    /// The user `email` (case-insensitive), as configured now.
    pub(super) fn user(&self, email: &str) -> Option<UserConfig> {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .cloned()
    }
}
