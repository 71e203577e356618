//! `GET /api/images`: the registry as JSON (the same entries as `bakery images --format
//! json`), for an operator's `Authorization: Bearer` token only, as the job pages are;
//! anything else is answered 404. Query parameters narrow the listing: `recipe`,
//! `version`, `channel`, `region`, `account`. Reads the cloud and the store, changes
//! nothing.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::OnceCell;

use super::model::ImageQuery;
use crate::aws::{AwsSession, AwsSettings};
use crate::config::ServerConfig;
use crate::policy::PolicyConfig;
use crate::server::job_page::is_operator;
use crate::server::AppState;

/// What the endpoint needs beyond the store: how to reach AWS, and the operator's policy
/// (which accounts and regions exist). The AWS session is made at the first request.
pub struct ImagesApi {
    settings: AwsSettings,
    policy: PolicyConfig,
    session: OnceCell<AwsSession>,
}

impl ImagesApi {
    pub fn new(config: &ServerConfig) -> Self {
        ImagesApi {
            settings: config.aws.settings(),
            policy: config.policy.clone(),
            session: OnceCell::new(),
        }
    }

    async fn session(&self) -> anyhow::Result<&AwsSession> {
        self.session
            .get_or_try_init(|| async {
                AwsSession::connect(self.settings.clone(), self.policy.registry_region()).await
            })
            .await
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

pub async fn images(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    // Who asks is checked before anything else is read, the query included.
    if !is_operator(&state, &headers) {
        return not_found();
    }
    let query = match Query::<ImageQuery>::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let api = &state.images;
    let result = async {
        let session = api.session().await?;
        let targets = super::scope::targets(session, state.store.as_ref(), &api.policy).await?;
        super::lookup(
            session,
            state.store.as_ref(),
            &targets,
            &query,
            chrono::Utc::now(),
        )
        .await
    }
    .await;
    match result {
        Ok(report) => Json(report).into_response(),
        Err(e) => {
            // The error may name accounts and roles: the log only.
            tracing::warn!("GET /api/images: {e:#}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the image registry is unavailable\n",
            )
                .into_response()
        }
    }
}
