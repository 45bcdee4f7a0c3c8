//! The HTTP edge: the routes under both prefixes, the operations endpoints, the cluster's
//! admin routes (`cluster`), and the layers every request passes (counting, request ids,
//! authentication).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::{on, IntoMakeService, MethodFilter, MethodRouter};
use axum::{Router, ServiceExt};

use crate::app::Shared;

mod cluster;
mod edge;
mod environment_keys;
mod environments;
mod error;
mod extract;
mod forward;
mod internal;
mod ops;
mod route;
mod work;

use edge::Edge;
pub(crate) use error::ApiError;
#[cfg(test)]
pub(crate) use internal::table_digest;
pub(crate) use route::Route;

/// Every route under both prefixes, plus `/healthz`, `/readyz`, `/cluster` and `/metrics`, behind the one
/// edge (request ids, authentication but for `/healthz` and `/readyz`, counting), for `axum::serve`.
pub(crate) fn router(shared: Arc<Shared>) -> IntoMakeService<Edge<Router>> {
    Edge::new(routes(shared.clone()), shared).into_make_service()
}

/// The router alone, without the edge: every [`Route`], each under its every path.
fn routes(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    // Each route registered whole under each prefix rather than nested: a nested router
    // rebuilds the request's URI and matched path on every request. Routes sharing a path
    // (`GET` and `POST` …/work) are merged by the router.
    for route in Route::ALL {
        for path in route.paths() {
            router = router.route(&path, handler(route));
        }
    }
    router
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(shared)
}

/// The code that answers `route`, on the route's method.
fn handler(route: Route) -> MethodRouter<Arc<Shared>> {
    let method = MethodFilter::try_from(route.method())
        .expect("invariant: a route's method is GET, POST or DELETE, each a method filter");
    match route {
        Route::CreateEnvironment => on(method, environments::create),
        Route::ListEnvironments => on(method, environments::list),
        Route::RetrieveEnvironment => on(method, environments::retrieve),
        Route::UpdateEnvironment => on(method, environments::update),
        Route::DeleteEnvironment => on(method, environments::delete),
        Route::ArchiveEnvironment => on(method, environments::archive),
        Route::CreateEnvironmentKey => on(method, environment_keys::create),
        Route::ListEnvironmentKeys => on(method, environment_keys::list),
        Route::RevokeEnvironmentKey => on(method, environment_keys::revoke),
        Route::ListWork => on(method, work::list),
        Route::CreateWork => on(method, work::create),
        Route::Poll => on(method, work::poll),
        Route::Stats => on(method, work::stats),
        Route::RetrieveWork => on(method, work::retrieve),
        Route::UpdateWork => on(method, work::update),
        Route::Ack => on(method, work::ack),
        Route::Heartbeat => on(method, work::heartbeat),
        Route::Stop => on(method, work::stop),
        Route::Healthz => on(method, ops::healthz),
        Route::Readyz => on(method, ops::readyz),
        Route::Cluster => on(method, ops::cluster),
        Route::Metrics => on(method, ops::metrics),
        Route::ListMembers => on(method, cluster::list),
        Route::AddMember => on(method, cluster::add),
        Route::RemoveMember => on(method, cluster::remove),
        Route::Backup => on(method, cluster::backup),
        Route::Digest => on(method, internal::digest),
        Route::RaftAppend => on(method, internal::append),
        Route::RaftVote => on(method, internal::vote),
        Route::RaftSnapshot => on(method, internal::snapshot),
        Route::RaftAdmission => on(method, cluster::admission),
        Route::RaftSeed => on(method, cluster::seed),
    }
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

    /// The routes registered at `template` (a path the router matched), from the table the
    /// router is built from.
    fn registered_at(template: &str) -> Vec<Route> {
        Route::ALL
            .into_iter()
            .filter(|route| route.paths().iter().any(|path| path == template))
            .collect()
    }

    /// What [`edge::route_of`] must name for a request the router matched to `template`:
    /// the route registered there for the method (`HEAD` is served as `GET`), or when none
    /// takes the method (a 405), any route at all.
    fn assert_named(template: &str, method: &Method, named: Option<Route>, request: &str) {
        let served_as = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        let here = registered_at(template);
        assert!(!here.is_empty(), "{template} is not in Route::ALL");
        match here.iter().find(|route| route.method() == served_as) {
            Some(route) => assert_eq!(named, Some(*route), "{request} (matched {template})"),
            None => assert!(named.is_some(), "{request} (matched {template}, a 405)"),
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
            "/environments/e1/keys",
            "/environments/e1/keys/",
            "/environments/e1/keys/k1",
            "/environments/e1/keys/k1/",
            "/environments/e1/keys/k1/x",
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
                "/cluster/members",
                "/cluster/members/",
                "/cluster/members/4",
                "/cluster/members/4/x",
                "/cluster/snapshot",
                crate::raft::ADMISSION_ROUTE,
                crate::raft::SEED_ROUTE,
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
                let named = edge::route_of(path, &method).0;
                if template.is_empty() {
                    assert_eq!(named, None, "{method} {path} (the router matched nothing)");
                } else {
                    assert_named(template, &method, named, &format!("{method} {path}"));
                }
            }
        }
    }

    /// Every route in the table, driven on its method under each of its paths: the router
    /// matches the route's own template, and the edge names that route.
    #[tokio::test]
    async fn every_route_is_matched_and_named() {
        let mut router = routes(shared()).layer(from_fn(matched));
        for route in Route::ALL {
            for template in route.paths() {
                let path = template
                    .replace("{environment_id}", "env_1")
                    .replace("{work_id}", "work_1")
                    .replace("{key_id}", "ekey_1");
                let request = Request::builder()
                    .method(route.method())
                    .uri(path.as_str())
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = router.call(request).await.unwrap();
                assert_eq!(response.headers()[TEMPLATE], template.as_str(), "{route:?}");
                let named = edge::route_of(&path, &route.method()).0;
                assert_eq!(named, Some(route), "{} {path}", route.method());
            }
        }
    }

    /// The membership and backup routes are for administrators: no environment key or item
    /// secret opens them, and they are never open.
    #[test]
    fn the_membership_and_backup_routes_are_admin_only() {
        let mut seen = 0;
        for route in Route::ALL {
            let membership = route
                .paths()
                .iter()
                .any(|path| path.starts_with("/cluster/members") || path == "/cluster/snapshot");
            if membership {
                seen += 1;
                let opens = route.opens();
                assert!(
                    !route.is_open()
                        && route.goes_to_leader()
                        && !opens.to_environment_keys
                        && !opens.to_item_secrets,
                    "{route:?}"
                );
            }
        }
        assert_eq!(seen, 4, "list, add and remove members, and the backup");
    }

    /// Every label a request can be counted under is one the metrics pre-register.
    #[test]
    fn every_route_label_is_a_known_metric_label() {
        let labels = Route::ALL.map(Route::label);
        for label in labels.iter().chain([&route::UNMATCHED]) {
            assert!(crate::metrics::ROUTES.contains(label), "{label}");
        }
        for known in crate::metrics::ROUTES {
            assert!(
                known == route::UNMATCHED || labels.contains(&known),
                "{known} labels no route"
            );
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
