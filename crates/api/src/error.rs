//! The one error type of the REST and gRPC handlers: a status, a stable code and a
//! message. 4xx bodies say exactly what was wrong with the request; 5xx bodies reveal
//! nothing internal (the cause goes to the log). gRPC turns it into a `Status`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::wire;

/// A failed request: a status, a stable code and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: wire::Error,
    /// A conflict with the state of an execution that has ended, rather than with an
    /// id that is taken: gRPC's `FAILED_PRECONDITION` rather than `ALREADY_EXISTS`.
    pub(crate) ended: bool,
    /// Seconds after which a request refused for a quota may be tried again.
    pub(crate) retry_after: Option<u64>,
    /// The quota that refused it, for `/metrics`.
    pub(crate) quota: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: wire::Error {
                error: code.into(),
                message: message.into(),
                diagnostics: Vec::new(),
            },
            ended: false,
            retry_after: None,
            quota: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no execution `{id}`"),
        )
    }

    pub(crate) fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A request an execution that has ended can no longer take.
    pub(crate) fn ended(message: impl Into<String>) -> ApiError {
        ApiError {
            ended: true,
            ..ApiError::conflict(message)
        }
    }

    pub(crate) fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database does not answer; try again shortly",
        )
    }

    /// A failure of ours. The cause goes to the log, not to the client.
    pub(crate) fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {cause}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> ApiError {
        if e.is_unavailable() {
            tracing::warn!("the database does not answer: {e}");
            return ApiError::unavailable();
        }
        ApiError::internal(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is larger than the server's limit (--max-body-bytes)",
            );
        }
        ApiError::new(rejection.status(), "bad_request", rejection.body_text())
    }
}

pub(crate) fn too_large(what: &str, size: usize, limit: usize, flag: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("{what} is {size} bytes, more than the limit of {limit} ({flag})"),
    )
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
