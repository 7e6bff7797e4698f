//! What a running development issuer holds: its configuration, counters, and the store of
//! pending sign-ins, sessions, codes and refresh tokens.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::builder::{ClientConfig, UserConfig};
use crate::testing::IssuerHandle;

pub(super) struct Config {
    pub(super) resource: String,
    pub(super) scopes: Vec<String>,
    pub(super) context_claim: String,
    pub(super) access_ttl: Duration,
    pub(super) refresh_ttl: Duration,
    pub(super) code_ttl: Duration,
    pub(super) clients: Vec<ClientConfig>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) authorize: AtomicU64,
    pub(super) logins: AtomicU64,
    pub(super) codes: AtomicU64,
    pub(super) token: AtomicU64,
    pub(super) refresh: AtomicU64,
    pub(super) revoke: AtomicU64,
}

pub(super) struct Shared {
    pub(super) handle: IssuerHandle,
    pub(super) config: Config,
    pub(super) users: Mutex<Vec<UserConfig>>,
    pub(super) cookie_name: String,
    pub(super) store: Mutex<Store>,
    pub(super) counters: Counters,
}

pub(super) type Digest = [u8; 32];

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

pub(super) struct Pending {
    pub(super) request: AuthRequest,
    pub(super) expires: Instant,
    pub(super) failures: u32,
}

pub(super) struct Session {
    pub(super) email: String,
    pub(super) expires: Instant,
}

pub(super) struct CodeEntry {
    pub(super) request: AuthRequest,
    pub(super) email: String,
    pub(super) grant: u64,
    pub(super) expires: Instant,
    pub(super) used: bool,
}

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
    pub(super) sessions: HashMap<Digest, Session>,
    pub(super) codes: HashMap<Digest, CodeEntry>,
    pub(super) refresh: HashMap<Digest, RefreshEntry>,
    /// Refresh tokens already rotated: presenting one again revokes its grant.
    pub(super) spent_refresh: HashMap<Digest, (u64, Instant)>,
    pub(super) next_grant: u64,
}

impl Store {
    pub(super) fn prune(&mut self, now: Instant) {
        self.pending.retain(|_, p| p.expires > now);
        self.sessions.retain(|_, s| s.expires > now);
        self.codes.retain(|_, c| c.expires > now);
        self.refresh.retain(|_, r| r.expires > now);
        self.spent_refresh.retain(|_, (_, expires)| *expires > now);
    }

    pub(super) fn revoke_grant(&mut self, grant: u64) {
        self.refresh.retain(|_, r| r.grant != grant);
    }
}

impl Shared {
    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn client(&self, id: &str) -> Option<&ClientConfig> {
        self.config.clients.iter().find(|c| c.id == id)
    }

    pub(super) fn user(&self, email: &str) -> Option<UserConfig> {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .cloned()
    }
}
