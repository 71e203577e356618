//! The baseline for `bench/webhook`: a bare axum endpoint that reads the body and
//! answers 200, doing nothing else. Usage: `bare_webhook 127.0.0.1:PORT`.

use axum::routing::post;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let app = axum::Router::new()
        .route(
            "/webhooks/github",
            post(|_body: bytes::Bytes| async { "ok" }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(25 * 1024 * 1024));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
