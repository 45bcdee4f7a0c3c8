//! The ceiling the server is measured against (`scripts/service-bench.sh`): a bare axum route on
//! the same runtime that answers every heartbeat path with a fixed `work_heartbeat` body of the
//! server's size, without auth, table, metrics or request ids.
//!
//! ```text
//! cargo run --release -p worklease-server --example bare -- [ADDR]
//! ```
//!
//! Prints `listening on http://ADDR` first, like the server.

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::routing::post;
use axum::Router;

const BODY: &str = r#"{"type":"work_heartbeat","last_heartbeat":"2026-07-01T08:15:06.120394Z","lease_extended":true,"state":"active","ttl_seconds":60}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let app = Router::new().route(
        "/v1/environments/{environment_id}/work/{work_id}/heartbeat",
        post(|| async {
            (
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                BODY,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
