//! The client a request names: a host that registered ([`RegisteredClient`], in the store), or
//! one identified by the URL of its metadata document (see `cimd`), which is never stored as a
//! registration.

use http::{Extensions, HeaderMap};

use super::cimd::{self, DocumentError, Requester};
use super::register::RegisteredClient;
use super::store::{Namespace, StoreError};
use super::{Inner, rate_limit};

/// A client as the authorization and token endpoints use it.
pub(crate) struct Client {
    /// Its metadata: as registered, or as its document describes it.
    pub metadata: RegisteredClient,
    /// For a client identified by a metadata document: the host that published it
    /// (`host[:port]` of the URL), which the bridge verified by fetching the document there.
    pub publisher: Option<String>,
}

impl Client {
    /// Whether every redirect URI the client may use is on this computer (loopback): then its
    /// identity cannot tell which local program receives the code.
    pub(crate) fn loopback_only(&self) -> bool {
        self.metadata.redirect_uris.iter().all(|r| {
            url::Url::parse(r).is_ok_and(|u| u.host().is_some_and(|h| crate::fetch::is_loopback_host(&h)))
        })
    }
}

/// Why a client id cannot be used.
#[derive(Debug)]
pub(crate) enum LookupError {
    /// No such registration (or it expired).
    Unknown,
    /// A URL client id the bridge does not accept (the URL, the policy or the document): why.
    Refused(String),
    /// The client's metadata document cannot be fetched right now: why.
    Unreachable(String),
    /// The caller made the bridge fetch too many documents lately.
    TooManyFetches,
    Store(StoreError),
}

/// Who is asking, as the fetch rate limit counts callers: the peer address (from
/// [`crate::serve()`]'s `ConnectInfo`) and the browser origin, if any.
pub(crate) fn requester(extensions: &Extensions, headers: &HeaderMap) -> Requester {
    let (ip, origin) = rate_limit::caller(extensions, headers);
    Requester { ip, origin }
}

/// The client named by `client_id`.
pub(crate) async fn lookup(
    inner: &Inner,
    client_id: &str,
    requester: &Requester,
) -> Result<Client, LookupError> {
    if cimd::is_url(client_id) {
        return match cimd::lookup(inner, client_id, requester).await {
            Ok((metadata, publisher)) => Ok(Client {
                metadata,
                publisher: Some(publisher),
            }),
            Err(DocumentError::Refused(why)) => Err(LookupError::Refused(why)),
            Err(DocumentError::Unreachable(why)) => Err(LookupError::Unreachable(why)),
            Err(DocumentError::TooManyFetches) => Err(LookupError::TooManyFetches),
            Err(DocumentError::Store(e)) => Err(LookupError::Store(e)),
        };
    }
    match inner.store.get_json(Namespace::Client, client_id).await {
        Ok(Some(metadata)) => Ok(Client {
            metadata,
            publisher: None,
        }),
        Ok(None) => Err(LookupError::Unknown),
        Err(e) => Err(LookupError::Store(e)),
    }
}
