//! Client ID Metadata Documents on loopback: a test CA (rcgen on aws-lc-rs) and document servers
//! that serve JSON as the real hosts publish it, over TLS with a certificate for the host's real
//! name (`vscode.dev`, …) or over plain http; the published documents of VS Code, Claude Code
//! and Codex, verbatim.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use a3_mcp_auth::testing::TestNetwork;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

/// VS Code's document at `https://vscode.dev/oauth/client-metadata.json`, as served.
pub const VSCODE_URL: &str = "https://vscode.dev/oauth/client-metadata.json";
pub const VSCODE_DOC: &str = r#"{"application_type":"native","client_id":"https://vscode.dev/oauth/client-metadata.json","client_name":"Visual Studio Code","client_uri":"https://vscode.dev/product","grant_types":["authorization_code","refresh_token","urn:ietf:params:oauth:grant-type:device_code"],"response_types":["code"],"redirect_uris":["https://vscode.dev/redirect","http://127.0.0.1:33418/"],"token_endpoint_auth_method":"none"}"#;

/// Claude Code's document at `https://claude.ai/oauth/claude-code-client-metadata`, as served.
pub const CLAUDE_CODE_URL: &str = "https://claude.ai/oauth/claude-code-client-metadata";
pub const CLAUDE_CODE_DOC: &str = r#"{"client_id":"https://claude.ai/oauth/claude-code-client-metadata","client_name":"Claude Code","client_uri":"https://claude.ai","redirect_uris":["http://localhost/callback","http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}"#;

/// Codex's document at `https://chatgpt.com/oauth/codex/client.json`, as served.
pub const CODEX_URL: &str = "https://chatgpt.com/oauth/codex/client.json";
pub const CODEX_DOC: &str = r#"{"client_id":"https://chatgpt.com/oauth/codex/client.json","client_uri":"https://chatgpt.com/codex","application_type":"native","redirect_uris":["http://127.0.0.1/callback","http://localhost/callback"],"token_endpoint_auth_method":"none","token_endpoint_auth_methods_supported":["none"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"client_name":"Codex","logo_uri":"https://persistent.oaistatic.com/sonic/misc/openai-logo.png"}"#;

/// A CA made for one test run.
pub struct TestCa {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "a3-mcp-auth test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let der = params.self_signed(&key).unwrap().der().to_vec();
        TestCa { key, params, der }
    }

    /// A TLS server configuration with a certificate for `names` (DNS names or IPs).
    pub fn server_config(&self, names: &[&str]) -> rustls::ServerConfig {
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap()
    }
}

/// A loopback server of documents, counting the connections it accepts.
pub struct DocumentServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocumentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DocumentServer {
    /// Over TLS with a certificate for `names` from `ca`.
    pub async fn tls(ca: &TestCa, names: &[&str], routes: Router) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config(names)));
        Self::start(routes, Some(acceptor)).await
    }

    /// Over plain http.
    pub async fn plain(routes: Router) -> Self {
        Self::start(routes, None).await
    }

    async fn start(routes: Router, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (routes, tls) = (routes.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = TowerToHyperService::new(routes);
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(tls) => match tls.accept(stream).await {
                            Ok(s) => http.serve_connection(TokioIo::new(s), service).await,
                            Err(_) => return,
                        },
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                    };
                });
            }
        });
        DocumentServer {
            addr,
            connections,
            task,
        }
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A route serving `body` as `application/json` with `Cache-Control: max-age=3600`.
pub fn json_route(body: &'static str) -> axum::routing::MethodRouter {
    axum::routing::get(move || async move {
        (
            [
                (http::header::CONTENT_TYPE, "application/json"),
                (http::header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            body,
        )
    })
}

/// The published documents of VS Code, Claude Code and Codex on one TLS server for their real
/// names, and a test network on which those names (port 443) reach it.
pub async fn published_hosts() -> (DocumentServer, TestNetwork) {
    let ca = TestCa::new();
    let routes = Router::new()
        .route("/oauth/client-metadata.json", json_route(VSCODE_DOC))
        .route("/oauth/claude-code-client-metadata", json_route(CLAUDE_CODE_DOC))
        .route("/oauth/codex/client.json", json_route(CODEX_DOC));
    let server = DocumentServer::tls(&ca, &["vscode.dev", "claude.ai", "chatgpt.com"], routes).await;
    let mut net = TestNetwork::new().trust_root(ca.der.clone());
    for host in ["vscode.dev", "claude.ai", "chatgpt.com"] {
        net = net.resolve(host, 443, [server.addr]);
    }
    (server, net)
}
