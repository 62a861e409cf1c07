//! The HTTP edge of errors: every engine error, and the few HTTP-only ones, mapped to a status
//! code and a plain-text body in one exhaustive `match`.

use actix_web::{
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use codex_actors::Error;

/// An error as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Anything the engine reports.
    #[error(transparent)]
    Engine(#[from] Error),
    /// `Content-Type` is not a known MIME type (Codex: 422).
    #[error("The MIME type '{0}' is not valid.")]
    InvalidMime(String),
    /// The `Content-Disposition` filename is not acceptable (Codex: 422).
    #[error("The filename is not valid.")]
    InvalidFilename,
    /// A request that cannot be served as asked (bad peer id or address, a failed dial).
    #[error("{0}")]
    BadRequest(String),
    /// The upload is larger than the configured limit.
    #[error("The upload exceeds the limit of {0} bytes")]
    TooLarge(u64),
}

impl ApiError {
    /// The reply body: Codex v0.2.5's wording where its API has one (measured on a live
    /// node), else the error's own text.
    fn body(&self) -> String {
        let ApiError::Engine(e) = self else {
            return self.to_string();
        };
        match e {
            Error::InvalidCid(_) => "Incorrect Cid".to_owned(),
            Error::UnsupportedCid(_) => "Unsupported Cid".to_owned(),
            Error::NotFound(_) => {
                "The requested CID could not be retrieved (Block not found in local store)."
                    .to_owned()
            }
            Error::NotAManifest(_) => "Unable to decode as manifest".to_owned(),
            Error::BlockInUse(_) => {
                "Directly deleting a block that is part of a dataset is not allowed.".to_owned()
            }
            Error::QuotaExceeded {
                used,
                reserved,
                max,
                needed,
            } => format!("Quota usage would exceed the limit. Used: {used}, reserved: {reserved}, limit: {max}, needed: {needed}"),
            Error::NotOnNetwork(why) => {
                format!("The requested CID could not be retrieved from the network ({why})")
            }
            other => {
                let text = other.to_string();
                // The engine's messages start lower-case; a reply body reads as a sentence.
                let mut chars = text.chars();
                chars.next().map_or(text.clone(), |first| {
                    first.to_uppercase().chain(chars).collect()
                })
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidMime(_) | ApiError::InvalidFilename => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Engine(e) => match e {
                Error::InvalidCid(_) | Error::UnsupportedCid(_) => StatusCode::BAD_REQUEST,
                Error::EmptyUpload | Error::Stream(_) => StatusCode::BAD_REQUEST,
                Error::NotFound(_) | Error::NotAManifest(_) | Error::NotOnNetwork(_) => {
                    StatusCode::NOT_FOUND
                }
                Error::Network(_) => StatusCode::BAD_GATEWAY,
                Error::NoNetwork | Error::TooManyFetches { .. } => StatusCode::SERVICE_UNAVAILABLE,
                Error::BlockInUse(_) => StatusCode::CONFLICT,
                Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
                Error::QuotaExceeded { .. } | Error::DiskFull(_) => {
                    StatusCode::INSUFFICIENT_STORAGE
                }
                Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                Error::BadManifest { .. }
                | Error::Corrupted(_)
                | Error::Storage(_)
                | Error::Poisoned
                | Error::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = HttpResponse::build(status);
        resp.content_type("text/plain; charset=utf-8");
        if let ApiError::Engine(Error::RangeNotSatisfiable { size }) = self {
            resp.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
        }
        resp.body(self.body())
    }
}
