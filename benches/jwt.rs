//! The JWT path: raw `jsonwebtoken::decode` against `JwtVerifier` (cache off / cache hit), and a
//! request through `BearerAuthLayer` + `RequireScopeLayer` against the same service bare.
//!
//! `cargo bench --bench jwt` runs criterion for each variant, then an interleaved pass
//! (A B A B … in one process, so the shared VM's speed swings hit every variant alike) and prints
//! the ratios the README quotes. `cargo bench --bench jwt -- --interleaved-only` skips criterion.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use a3_mcp_auth::testing::TestIssuer;
use a3_mcp_auth::{
    BearerAuthLayer, JwtVerifier, ProtectedResourceMetadata, RequireScopeLayer, TokenVerifier,
};
use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::Full;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};

const RESOURCE: &str = "http://127.0.0.1:8000/mcp";

struct Fixture {
    rt: tokio::runtime::Runtime,
    _issuer: TestIssuer,
    token: String,
    key: DecodingKey,
    validation: Validation,
    cached: JwtVerifier,
    uncached: JwtVerifier,
    metadata: ProtectedResourceMetadata,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (issuer, cached, uncached) = rt.block_on(async {
        let issuer = TestIssuer::start().await;
        let cached = JwtVerifier::builder(issuer.url(), RESOURCE)
            .discover()
            .await
            .unwrap();
        let uncached = JwtVerifier::builder(issuer.url(), RESOURCE)
            .cache_capacity(0)
            .discover()
            .await
            .unwrap();
        (issuer, cached, uncached)
    });
    // An A3-shaped access token: RS256 (2048-bit), scope string, contexts, client_id.
    let token = issuer
        .token(RESOURCE)
        .subject("johndoe@test.com")
        .client_id("0123456789abcdef0123456789abcdef")
        .scope("mcp:call")
        .claim("contexts", json!({"operation": ["addition", "multiplication"]}))
        .sign();
    let jwks: JwkSet = serde_json::from_value(json!({"keys": [issuer.current_key().public_jwk()]})).unwrap();
    let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer.url()]);
    validation.set_audience(&[RESOURCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = 30;
    validation.validate_nbf = true;
    let metadata = ProtectedResourceMetadata::new(RESOURCE)
        .unwrap()
        .with_authorization_server(issuer.url())
        .with_scopes_supported(["mcp:call"]);
    Fixture {
        rt,
        _issuer: issuer,
        token,
        key,
        validation,
        cached,
        uncached,
        metadata,
    }
}

fn request(token: &str) -> Request<Full<Bytes>> {
    Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )))
        .unwrap()
}

async fn trivial(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"{}"))))
}

/// A trivial service that, like rmcp's, is cheap to clone.
fn bare()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ 'static {
    tower::service_fn(trivial)
}

fn layered(
    f: &Fixture,
) -> impl Service<Request<Full<Bytes>>, Response = Response<impl Send>, Error = Infallible> + Clone {
    ServiceBuilder::new()
        .layer(BearerAuthLayer::new(f.cached.clone(), f.metadata.challenge()))
        .layer(RequireScopeLayer::new(["mcp:call"], f.metadata.challenge()))
        .service(bare())
}

/// Polls a future that completes without waiting (every measured path does, once the keys are
/// loaded and the cache is warm), so no executor overhead is measured.
fn now<F: std::future::Future>(fut: F) -> F::Output {
    futures_util::FutureExt::now_or_never(fut).expect("the measured path never waits")
}

fn raw_decode(f: &Fixture) {
    let data = jsonwebtoken::decode::<Map<String, Value>>(&f.token, &f.key, &f.validation).unwrap();
    black_box(data);
}

fn main() {
    assert!(a3_mcp_auth::jwt::install_crypto_provider());
    let f = fixture();
    let interleaved_only = std::env::args().any(|a| a == "--interleaved-only");
    // Inside the runtime that serves the test issuer; warm the cache for the hit variants.
    let _runtime = f.rt.enter();
    now(f.cached.verify(&f.token)).unwrap();

    if !interleaved_only {
        let mut c = Criterion::default().configure_from_args().without_plots();
        let mut g = c.benchmark_group("jwt");
        g.bench_function("a_raw_jsonwebtoken_decode", |b| b.iter(|| raw_decode(&f)));
        g.bench_function("b_verifier_cache_off", |b| {
            b.iter(|| black_box(now(f.uncached.verify(&f.token)).unwrap()))
        });
        g.bench_function("c_verifier_cache_hit", |b| {
            b.iter(|| black_box(now(f.cached.verify(&f.token)).unwrap()))
        });
        let svc = bare();
        g.bench_function("d0_service_without_layers", |b| {
            b.iter(|| black_box(now(svc.clone().oneshot(request(&f.token))).unwrap()))
        });
        let svc = layered(&f);
        g.bench_function("d1_service_with_layers_cache_hit", |b| {
            b.iter(|| black_box(now(svc.clone().oneshot(request(&f.token))).unwrap()))
        });
        g.finish();
        c.final_summary();
    }

    interleaved(&f);
}

/// Runs every variant in turn, round after round, and reports per-variant medians and the
/// median of per-round ratios.
fn interleaved(f: &Fixture) {
    const ROUNDS: usize = 41;
    let bare_svc = bare();
    let layered_svc = layered(f);
    let time = |n: u32, op: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        start.elapsed() / n
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut c = Vec::new();
    let mut d0 = Vec::new();
    let mut d1 = Vec::new();
    for _ in 0..ROUNDS {
        a.push(time(200, &mut || raw_decode(f)));
        b.push(time(200, &mut || {
            black_box(now(f.uncached.verify(&f.token)).unwrap());
        }));
        c.push(time(5000, &mut || {
            black_box(now(f.cached.verify(&f.token)).unwrap());
        }));
        d0.push(time(5000, &mut || {
            black_box(now(bare_svc.clone().oneshot(request(&f.token))).unwrap());
        }));
        d1.push(time(5000, &mut || {
            black_box(now(layered_svc.clone().oneshot(request(&f.token))).unwrap());
        }));
    }
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    let ratio = |x: &[Duration], y: &[Duration]| {
        let mut r: Vec<f64> = x
            .iter()
            .zip(y)
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let added: Vec<Duration> = d1.iter().zip(&d0).map(|(l, b)| l.saturating_sub(*b)).collect();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\ninterleaved, {ROUNDS} rounds (A B C D0 D1 per round), per-operation times:");
    println!("| variant | median (µs) | ratio (median of per-round ratios) |");
    println!("|---|---:|---|");
    println!(
        "| (a) raw jsonwebtoken::decode, RS256 2048 | {:.2} | baseline |",
        us(median(&a))
    );
    println!(
        "| (b) JwtVerifier, cache off | {:.2} | (b)/(a) = {:.3} |",
        us(median(&b)),
        ratio(&b, &a)
    );
    println!(
        "| (c) JwtVerifier, cache hit | {:.3} | (c)/(a) = {:.4} |",
        us(median(&c)),
        ratio(&c, &a)
    );
    println!("| (d0) trivial service, no layers | {:.3} | — |", us(median(&d0)));
    println!(
        "| (d1) same service behind BearerAuth + RequireScope, cache hit | {:.3} | adds {:.3} µs per request (median of per-round differences) |",
        us(median(&d1)),
        us(median(&added))
    );
}
