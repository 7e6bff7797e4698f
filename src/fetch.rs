//! Bounded HTTP GETs of issuer documents (discovery, JWKS): HTTPS only except on loopback,
//! no redirects, a timeout and a size cap.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;
use serde::de::DeserializeOwned;
use url::{Host, Url};

/// Why an issuer document could not be fetched. Messages name the URL, never credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not `https`, and not `http` on a loopback address.
    #[error("{0} must use https (plain http is allowed only on loopback)")]
    Insecure(String),
    /// Connecting, sending or reading failed, or timed out.
    #[error("fetching {url} failed: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with a non-success status.
    #[error("fetching {url} returned HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The document exceeded the size cap.
    #[error("{url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// The document is not the expected JSON.
    #[error("{url} is not a valid document: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Whether `host` is a loopback name or address (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// `https`, or `http` to a loopback host.
pub(crate) fn check_secure(url: &Url) -> Result<(), FetchError> {
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => Ok(()),
        ("http", Some(host)) if is_loopback_host(&host) => Ok(()),
        _ => Err(FetchError::Insecure(url.to_string())),
    }
}

/// The HTTP client used for issuer documents: no redirects (a redirect could leave https or the
/// issuer), no proxy from the environment, bounded connect and total time.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("a3-mcp-auth/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the TLS backend is compiled in, so building the client cannot fail")
}

/// GETs `url` and parses it as JSON, reading at most `max_bytes`.
pub(crate) async fn get_json<T: DeserializeOwned>(
    client: &reqwest::Client,
    url: &Url,
    max_bytes: usize,
) -> Result<(T, HeaderMap), FetchError> {
    check_secure(url)?;
    let transport = |e: reqwest::Error| FetchError::Transport {
        url: url.to_string(),
        // reqwest's messages can repeat the URL but never carry request bodies or headers.
        reason: e.without_url().to_string(),
    };
    let mut response = client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    if !response.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: response.status().as_u16(),
        });
    }
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: max_bytes,
    };
    if response.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let headers = response.headers().clone();
    let value = serde_json::from_slice(&body).map_err(|e| FetchError::Invalid {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    Ok((value, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        for ok in [
            "https://a3.mekarge.com/x",
            "http://127.0.0.1:9/x",
            "http://127.5.0.1/",
            "http://[::1]:80/",
            "http://localhost/",
        ] {
            assert!(check_secure(&Url::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "http://a3.mekarge.com/x",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
        ] {
            assert!(check_secure(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }
}
