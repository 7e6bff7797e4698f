//! What every layer answers when it refuses a request: the response body type, the JSON and
//! challenge refusals, and the response future shared by the layers that decide synchronously.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;

use crate::challenge::{AuthError, Challenge};

/// The response body of every layer in this crate: the inner service's body, or the layer's own
/// refusal (a small JSON body).
///
/// ```
/// use a3_mcp_auth::AuthBody;
/// use http_body_util::{Either, Full};
///
/// let refusal: AuthBody<String> = Either::Right(Full::from("{\"error\":\"forbidden\"}"));
/// # let _ = refusal;
/// ```
pub type AuthBody<B> = Either<B, Full<Bytes>>;

/// A challenge refusal (401/400/403/503 per `error`), logged at debug level without the token.
pub(crate) fn error_response<B>(challenge: &Challenge, error: &AuthError) -> Response<AuthBody<B>> {
    if let AuthError::Unavailable { .. } = error {
        // Debug, not warn: an unknown-kid flood during an outage must not flood the logs; the
        // key store warns once per failed fetch.
        tracing::debug!("refused a request: token keys unavailable");
    } else {
        tracing::debug!(status = %error.status(), reason = %error.description(), "refused a request");
    }
    challenge.response(error).map(Either::Right)
}

/// A refusal of the layers that carry no challenge: `status` and `{"error", "error_description"}`.
pub(crate) fn json_refusal<B>(status: StatusCode, error: &str, description: &str) -> Response<AuthBody<B>> {
    let body = serde_json::json!({"error": error, "error_description": description}).to_string();
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pin_project! {
    /// Response future of [`OriginCheck`](crate::origin_check::OriginCheck),
    /// [`RequireScope`](crate::require_scope::RequireScope) and
    /// [`ToolContext`](crate::tool_context::ToolContext): a refusal ready at once, or the inner
    /// service's future.
    ///
    /// ```
    /// use a3_mcp_auth::origin_check::ResponseFuture;
    /// use std::convert::Infallible;
    /// use std::future::Ready;
    ///
    /// type Fut = ResponseFuture<Ready<Result<http::Response<()>, Infallible>>, ()>;
    /// # let _: Option<Fut> = None;
    /// ```
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = Projection]
    enum Kind<F, B> {
        Refused { response: Option<Response<AuthBody<B>>> },
        Inner { #[pin] fut: F },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn refused(response: Response<AuthBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }

    pub(crate) fn inner(fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { fut },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<AuthBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Projection::Inner { fut } => fut.poll(cx).map_ok(|r| r.map(Either::Left)),
        }
    }
}
