//! `POST /webhooks/github`: the [`GitHubDelivery`] extractor verifies and types a
//! delivery; the handler only records it (and its job) and answers.
//!
//! Intake is bounded: a delivery without a well-formed signature header, or announcing a
//! body above `webhook.max_body_bytes`, is refused before its body is read; at most
//! `webhook.max_concurrent` bodies are read at once, each within `webhook.read_timeout_secs`.

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tracing::Instrument;

use super::intake::{self, IntakeDecision};
use super::signature::{self, SignatureError};
use super::AppState;
use crate::database::{DeliveryOutcome, NewDelivery};
use crate::github::webhook::{parse_event, EventError, WebhookEvent};
use crate::metrics::metrics;

pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// A delivery whose signature is verified and whose payload is typed.
#[derive(Debug)]
pub struct GitHubDelivery {
    pub delivery_id: String,
    pub event_name: String,
    pub event: WebhookEvent,
}

/// Why a delivery was refused, as the sender sees it.
#[derive(Debug)]
pub enum DeliveryRejection {
    MissingHeader(&'static str),
    BadHeader(&'static str),
    TooLarge {
        limit: usize,
    },
    /// Every turn stayed taken for the whole read timeout.
    Busy,
    /// The body did not arrive within the read timeout.
    ReadTimeout,
    BodyUnreadable(String),
    Signature(SignatureError),
    FormEncoded,
    Payload(EventError),
}

impl DeliveryRejection {
    pub fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            DeliveryRejection::MissingHeader(h) => {
                (StatusCode::BAD_REQUEST, format!("missing {h} header"))
            }
            DeliveryRejection::BadHeader(h) => (
                StatusCode::BAD_REQUEST,
                format!("{h} header is not valid text"),
            ),
            DeliveryRejection::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("payload is larger than {limit} bytes"),
            ),
            DeliveryRejection::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many deliveries at once; redeliver later".to_string(),
            ),
            DeliveryRejection::ReadTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time".to_string(),
            ),
            DeliveryRejection::BodyUnreadable(e) => {
                (StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"))
            }
            DeliveryRejection::Signature(e) => (StatusCode::UNAUTHORIZED, e.to_string()),
            DeliveryRejection::FormEncoded => (
                StatusCode::BAD_REQUEST,
                "form-encoded payloads are not supported: set the webhook's content type to application/json".to_string(),
            ),
            DeliveryRejection::Payload(e) => (StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

impl DeliveryRejection {
    /// The reason's name in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DeliveryRejection::MissingHeader(_) => "missing_header",
            DeliveryRejection::BadHeader(_) => "bad_header",
            DeliveryRejection::TooLarge { .. } => "too_large",
            DeliveryRejection::Busy => "busy",
            DeliveryRejection::ReadTimeout => "read_timeout",
            DeliveryRejection::BodyUnreadable(_) => "body_unreadable",
            DeliveryRejection::Signature(SignatureError::Missing) => "signature_missing",
            DeliveryRejection::Signature(SignatureError::Malformed) => "signature_malformed",
            DeliveryRejection::Signature(SignatureError::Mismatch) => "signature_mismatch",
            DeliveryRejection::FormEncoded => "form_encoded",
            DeliveryRejection::Payload(_) => "payload",
        }
    }
}

impl IntoResponse for DeliveryRejection {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        (status, message + "\n").into_response()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, DeliveryRejection> {
    let value = headers
        .get(name)
        .ok_or(DeliveryRejection::MissingHeader(header_display(name)))?;
    let text = value
        .to_str()
        .map_err(|_| DeliveryRejection::BadHeader(header_display(name)))?;
    if text.trim().is_empty() {
        return Err(DeliveryRejection::MissingHeader(header_display(name)));
    }
    Ok(text)
}

fn header_display(name: &'static str) -> &'static str {
    match name {
        EVENT_HEADER => "X-GitHub-Event",
        DELIVERY_HEADER => "X-GitHub-Delivery",
        SIGNATURE_HEADER => "X-Hub-Signature-256",
        other => other,
    }
}

impl FromRequest<AppState> for GitHubDelivery {
    type Rejection = DeliveryRejection;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let event_name = header(&parts.headers, EVENT_HEADER)?.to_string();
        let delivery_id = header(&parts.headers, DELIVERY_HEADER)?.to_string();
        // Unsigned deliveries are refused before a byte of their body is read.
        signature::parse_header(parts.headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes()))
            .map_err(DeliveryRejection::Signature)?;
        let limit = state.max_body_bytes;
        if let Some(len) = parts
            .headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > limit as u64 {
                return Err(DeliveryRejection::TooLarge { limit });
            }
        }
        // A bounded number of bodies in memory at once, each arriving in bounded time.
        let deadline = tokio::time::Instant::now() + state.read_timeout;
        let _turn = tokio::time::timeout_at(deadline, state.intake_turns.acquire())
            .await
            .map_err(|_| DeliveryRejection::Busy)?
            .map_err(|_| DeliveryRejection::Busy)?;
        let body = tokio::time::timeout_at(deadline, read_limited(body, limit))
            .await
            .map_err(|_| DeliveryRejection::ReadTimeout)??;
        signature::verify(
            &state.webhook_secrets,
            parts.headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes()),
            &body,
        )
        .map_err(DeliveryRejection::Signature)?;
        if parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
        {
            return Err(DeliveryRejection::FormEncoded);
        }
        let event = parse_event(&event_name, &body).map_err(DeliveryRejection::Payload)?;
        Ok(GitHubDelivery {
            delivery_id,
            event_name,
            event,
        })
    }
}

async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, DeliveryRejection> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(DeliveryRejection::TooLarge { limit })
        }
        Err(e) => Err(DeliveryRejection::BodyUnreadable(e.to_string())),
    }
}

/// Records the delivery and its job (if any) durably, then answers. The work happens
/// later, in the workers.
pub async fn github_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    delivery: Result<GitHubDelivery, DeliveryRejection>,
) -> Response {
    let delivery = match delivery {
        Ok(d) => d,
        Err(rejection) => {
            let id = headers
                .get(DELIVERY_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let event = headers
                .get(EVENT_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let (status, message) = rejection.status_and_message();
            metrics().delivery(event, "rejected", rejection.reason());
            tracing::warn!(delivery = %id, event = %event, status = status.as_u16(), "delivery refused: {message}");
            return (status, message + "\n").into_response();
        }
    };
    let span = tracing::info_span!(
        "delivery",
        delivery = %delivery.delivery_id,
        event = %delivery.event_name
    );
    handle(state, delivery).instrument(span).await
}

async fn handle(state: AppState, delivery: GitHubDelivery) -> Response {
    let decision = intake::decide(&delivery.event, &state.tag_patterns, &delivery.delivery_id);
    let summary = match &decision {
        IntakeDecision::Pong => "ping".to_string(),
        IntakeDecision::Enqueue(job) => format!(
            "{} job for {} {} {}",
            job.kind.as_str(),
            job.repo,
            job.git_ref,
            job.sha
        ),
        IntakeDecision::Ignore(reason) => format!("ignored: {reason}"),
    };
    let new_delivery = NewDelivery {
        delivery_id: delivery.delivery_id.clone(),
        event: delivery.event_name.clone(),
        summary: summary.clone(),
    };
    let job = match &decision {
        IntakeDecision::Enqueue(job) => Some(job),
        _ => None,
    };
    let outcome = match state.store.record_delivery(&new_delivery, job).await {
        Ok(o) => o,
        Err(e) => {
            metrics().delivery(&delivery.event_name, "unavailable", "");
            tracing::error!("cannot record the delivery: {e:#}");
            // Nothing was stored: GitHub shows the failure and the delivery can be redelivered.
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the job store is unavailable; redeliver later\n",
            )
                .into_response();
        }
    };
    let counted = match (&outcome, &decision) {
        (DeliveryOutcome::Duplicate, _) => "duplicate",
        (_, IntakeDecision::Ignore(_)) => "ignored",
        _ => "accepted",
    };
    metrics().delivery(&delivery.event_name, counted, "");
    match (outcome, decision) {
        (DeliveryOutcome::Duplicate, _) => {
            tracing::info!("duplicate delivery; nothing changed");
            (
                StatusCode::OK,
                format!(
                    "duplicate delivery {}: already recorded\n",
                    delivery.delivery_id
                ),
            )
                .into_response()
        }
        (_, IntakeDecision::Pong) => {
            tracing::info!("ping");
            (StatusCode::OK, "pong\n").into_response()
        }
        (DeliveryOutcome::Created(id), IntakeDecision::Enqueue(_)) => {
            tracing::info!(job = id, "queued {summary}");
            state.job_queued.notify_waiters();
            (
                StatusCode::ACCEPTED,
                format!("queued job {id}: {summary}\n"),
            )
                .into_response()
        }
        (DeliveryOutcome::Merged(id), IntakeDecision::Enqueue(_)) => {
            tracing::info!(job = id, "delivery joins existing job {id}");
            (
                StatusCode::ACCEPTED,
                format!("job {id} already covers this: {summary}\n"),
            )
                .into_response()
        }
        (_, IntakeDecision::Ignore(reason)) => {
            tracing::info!("ignored: {reason}");
            (StatusCode::ACCEPTED, format!("ignored: {reason}\n")).into_response()
        }
        (outcome, decision) => {
            tracing::error!(?outcome, ?decision, "unexpected intake outcome");
            (StatusCode::ACCEPTED, "recorded\n").into_response()
        }
    }
}
