//! The attacker's web page: a real listener on another loopback port of the victim's machine,
//! which a browser treats as another origin of the same site, and whose cookies it shares with
//! every other port of the host.

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use http::{StatusCode, header};

pub struct HostilePage {
    /// The page's URL, `http://127.0.0.1:{port}/`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostilePage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostilePage {
    async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        HostilePage { url, task }
    }

    /// A page that sets `cookies` (`name=value` pairs, for the whole host) and sends the browser
    /// on to `location`: cookie tossing.
    pub async fn planting(cookies: Vec<String>, location: String) -> Self {
        let answer = move || {
            let (cookies, location) = (cookies.clone(), location.clone());
            async move {
                let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
                for c in cookies {
                    r.headers_mut()
                        .append(header::SET_COOKIE, format!("{c}; Path=/").parse().unwrap());
                }
                r
            }
        };
        Self::start(Router::new().route("/", get(answer))).await
    }

    /// A page with `html`, e.g. a form that posts elsewhere.
    pub async fn serving(html: String) -> Self {
        let answer = move || {
            let html = html.clone();
            async move { Html(html) }
        };
        Self::start(Router::new().route("/", get(answer))).await
    }
}
