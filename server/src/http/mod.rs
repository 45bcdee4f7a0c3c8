//! The HTTP edge: the routes under both prefixes, the operations endpoints, and the layers
//! every request passes (counting, request ids, authentication).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::{get, post, IntoMakeService};
use axum::{Router, ServiceExt};

use crate::app::Shared;

mod edge;
mod environments;
mod error;
mod extract;
mod forward;
mod internal;
mod ops;
mod work;

use edge::Edge;
pub(crate) use error::ApiError;
#[cfg(test)]
pub(crate) use internal::table_digest;

/// Every route under both prefixes, plus `/healthz`, `/readyz`, `/cluster` and `/metrics`, behind the one
/// edge (request ids, authentication but for `/healthz` and `/readyz`, counting), for `axum::serve`.
pub(crate) fn router(shared: Arc<Shared>) -> IntoMakeService<Edge<Router>> {
    Edge::new(routes(shared.clone()), shared).into_make_service()
}

/// The router alone, without the edge.
fn routes(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    // Each route under both prefixes, registered whole rather than nested: a nested router
    // rebuilds the request's URI and matched path on every request.
    for prefix in ["/api/v1/cloud", "/v1"] {
        let environments = format!("{prefix}/environments");
        let work = format!("{environments}/{{environment_id}}/work");
        let environment = format!("{environments}/{{environment_id}}");
        router = router
            .route(
                &environments,
                post(environments::create).get(environments::list),
            )
            .route(
                &environment,
                get(environments::retrieve)
                    .post(environments::update)
                    .delete(environments::delete),
            )
            .route(
                &format!("{environment}/archive"),
                post(environments::archive),
            )
            .route(&work, get(work::list).post(work::create))
            .route(&format!("{work}/"), get(work::list))
            .route(&format!("{work}/poll"), get(work::poll))
            .route(&format!("{work}/stats"), get(work::stats))
            .route(
                &format!("{work}/{{work_id}}"),
                get(work::retrieve).post(work::update),
            )
            .route(&format!("{work}/{{work_id}}/ack"), post(work::ack))
            .route(
                &format!("{work}/{{work_id}}/heartbeat"),
                post(work::heartbeat),
            )
            .route(&format!("{work}/{{work_id}}/stop"), post(work::stop));
    }
    router
        .route("/cluster", get(ops::cluster))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route(crate::raft::APPEND_ROUTE, post(internal::append))
        .route(crate::raft::VOTE_ROUTE, post(internal::vote))
        .route(crate::raft::SNAPSHOT_ROUTE, post(internal::snapshot))
        .route("/internal/digest", get(internal::digest))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(shared)
}

async fn unknown_route() -> ApiError {
    ApiError::own(
        StatusCode::NOT_FOUND,
        "not_found_error",
        "no such route".to_owned(),
    )
}

async fn wrong_method() -> ApiError {
    ApiError::own(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "this route does not take that method".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use axum::extract::{MatchedPath, Request};
    use axum::http::{Method, StatusCode};
    use axum::middleware::{from_fn, Next};
    use axum::response::{IntoResponse, Response};
    use tower_service::Service;

    use super::*;
    use crate::clock::Clock;
    use crate::metrics::Metrics;
    use crate::submit::Submit;

    /// The route a matched template serves, as the edge named it when it ran inside the
    /// router (from `MatchedPath`): what [`edge::route_of`] must say from the path alone.
    fn named_by_template(template: &str, method: &Method) -> &'static str {
        let get = method == Method::GET;
        let tail = template
            .strip_prefix("/api/v1/cloud")
            .or_else(|| template.strip_prefix("/v1"))
            .unwrap_or(template);
        match tail {
            "/healthz" => "healthz",
            "/readyz" => "readyz",
            "/cluster" => "cluster",
            "/metrics" => "metrics",
            _ if tail.starts_with("/internal/") => "internal",
            "/environments" => "create_environment",
            _ if tail.ends_with("/work/{work_id}/heartbeat") => "heartbeat",
            _ if tail.ends_with("/work/{work_id}/ack") => "ack",
            _ if tail.ends_with("/work/{work_id}/stop") => "stop",
            _ if tail.ends_with("/work/poll") => "poll",
            _ if tail.ends_with("/work/stats") => "stats",
            _ if tail.ends_with("/work/{work_id}") => {
                if get {
                    "retrieve"
                } else {
                    "update_metadata"
                }
            }
            _ if tail.ends_with("/work") || tail.ends_with("/work/") => {
                if get {
                    "list"
                } else {
                    "create_work"
                }
            }
            _ => "other",
        }
    }

    /// Answers with the template the router matched in a header (none: the fallbacks; a
    /// header because a HEAD answer has no body), running no route.
    async fn matched(request: Request, _: Next) -> Response {
        let template = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(String::new, |path| path.as_str().to_owned());
        (StatusCode::OK, [(TEMPLATE, template)]).into_response()
    }

    const TEMPLATE: &str = "x-template";

    /// An in-memory server's state, with the token `token`.
    fn shared() -> Arc<Shared> {
        let metrics = Arc::new(Metrics::new());
        let submit = Submit::new(Default::default(), metrics.clone(), Arc::new(Clock::new()));
        Arc::new(Shared::new(submit, "token".to_owned(), metrics))
    }

    #[tokio::test]
    async fn the_edge_names_the_route_the_router_matches() {
        let shared = shared();
        let mut router = routes(shared).layer(from_fn(matched));
        let tails = [
            "",
            "/",
            "/environments",
            "/environments/",
            "/environmentsx",
            "/environments/e1",
            "/environments/e1/",
            "/environments/archive",
            "/environments/e1/archive",
            "/environments/e1/archive/",
            "/environments/e1/works",
            "/environments/e1/work",
            "/environments/e1/work/",
            "/environments/e1/work//",
            "/environments/e1/work/poll",
            "/environments/e1/work/poll/",
            "/environments/e1/work/stats",
            "/environments/e1/work/w1",
            "/environments/e1/work/w1/",
            "/environments/e1/work/w1/heartbeat",
            "/environments/e1/work/w1/heartbeat/",
            "/environments/e1/work/w1/heartbeat/x",
            "/environments/e1/work/w1/ack",
            "/environments/e1/work/w1/stop",
            "/environments/e1/work/w1/other",
            "/environments/e1/work/poll/ack",
            "/environments/e1/work/stats/heartbeat",
            "/environments/e1/work/work/stop",
            "/environments//work",
            "/environments//work/w1/heartbeat",
            "/environments/e1/work//heartbeat",
            "/environments/work/work/poll",
            "/environments/e%2F1/work/w%20x/ack",
            "/healthz",
            "/readyz",
            "/metrics",
        ];
        let mut paths: Vec<String> = ["", "/v1", "/api/v1/cloud", "/v2", "/v1/", "/api/v1"]
            .iter()
            .flat_map(|prefix| tails.iter().map(move |tail| format!("{prefix}{tail}")))
            .filter(|path| path.starts_with('/'))
            .collect();
        paths.extend(
            [
                "/healthz/",
                "/cluster",
                "/cluster/x",
                "/internal/digest",
                crate::raft::APPEND_ROUTE,
                crate::raft::VOTE_ROUTE,
                crate::raft::SNAPSHOT_ROUTE,
                "/internal/raft",
                "/internal/other",
            ]
            .map(str::to_owned),
        );
        for path in &paths {
            for method in [Method::GET, Method::POST, Method::DELETE, Method::HEAD] {
                let request = Request::builder()
                    .method(method.clone())
                    .uri(path.as_str())
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = router.call(request).await.unwrap();
                let template = response.headers()[TEMPLATE].to_str().unwrap();
                let expected = if template.is_empty() {
                    "unmatched"
                } else {
                    named_by_template(template, &method)
                };
                assert_eq!(
                    edge::route_of(path, &method).0,
                    expected,
                    "{method} {path} (the router matched {template:?})"
                );
            }
        }
    }

    /// Sends one request through the edge and the router, as a client would.
    async fn send(
        service: &mut Edge<Router>,
        method: Method,
        path: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer token")
            .header("worker-id", "w1")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        let response = service.call(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// The edge answers a heartbeat whose ids need no decoding itself; one with a
    /// percent-encoded id goes through the router. Both must answer alike.
    #[tokio::test]
    async fn heartbeats_answer_alike_with_and_without_the_router() {
        let shared = shared();
        let mut service = Edge::new(routes(shared.clone()), shared);
        let (_, environment) = send(
            &mut service,
            Method::POST,
            "/v1/environments",
            r#"{"name": "e", "config": {"type": "self_hosted"}}"#,
        )
        .await;
        let environment = environment["id"].as_str().unwrap().to_owned();
        let base = format!("/v1/environments/{environment}/work");
        send(
            &mut service,
            Method::POST,
            &base,
            r#"{"data": {"type": "session", "id": "sess_1"}}"#,
        )
        .await;
        let (_, item) = send(&mut service, Method::GET, &format!("{base}/poll"), "").await;
        let work = item["id"].as_str().unwrap().to_owned();
        let (status, _) = send(
            &mut service,
            Method::POST,
            &format!("{base}/{work}/ack"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        // `%77` is `w`: the same ids, which only the router decodes.
        let encoded = work.replacen('w', "%77", 1);
        assert_ne!(encoded, work);
        let unknown = "work_0123456789abcdef0123456789abcdef";
        for (tail, expected) in [
            ("", StatusCode::OK),
            ("?desired_ttl_seconds=30", StatusCode::OK),
            ("?desired_ttl_seconds=zero", StatusCode::BAD_REQUEST),
            (
                "?expected_last_heartbeat=NO_HEARTBEAT",
                StatusCode::PRECONDITION_FAILED,
            ),
        ] {
            let mut answers = Vec::new();
            for id in [work.as_str(), encoded.as_str()] {
                for prefix in ["/v1", "/api/v1/cloud"] {
                    let path =
                        format!("{prefix}/environments/{environment}/work/{id}/heartbeat{tail}");
                    let (status, mut body) = send(&mut service, Method::POST, &path, "").await;
                    assert_eq!(status, expected, "{path}: {body}");
                    // What differs between two answers by design: the request id, the time.
                    body.as_object_mut().unwrap().remove("request_id");
                    body.as_object_mut().unwrap().remove("last_heartbeat");
                    if let Some(error) = body.get_mut("error") {
                        error.as_object_mut().unwrap().remove("message");
                        error.as_object_mut().unwrap().remove("details");
                    }
                    answers.push(body);
                }
            }
            assert!(
                answers.windows(2).all(|pair| pair[0] == pair[1]),
                "{answers:?}"
            );
        }
        for id in [unknown.to_owned(), unknown.replacen('w', "%77", 1)] {
            let path = format!("{base}/{id}/heartbeat");
            let (status, body) = send(&mut service, Method::POST, &path, "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert_eq!(body["error"]["type"], "not_found_error");
        }
    }
}
