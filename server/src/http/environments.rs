//! `POST /environments`: the stand-in for the environment service a real deployment has.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use worklease::EnvironmentKind;

use super::edge::{json, parse_json, read_body, ApiError};
use crate::app::Shared;

type Handled = Result<Response, ApiError>;

/// The environment object a create returns: the documented fields first, then the ones the
/// Anthropic SDK's `BetaEnvironment` also reads.
#[derive(Debug, Serialize)]
struct EnvironmentObject<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    config: EnvironmentConfig,
    metadata: serde_json::Map<String, Value>,
    description: Option<String>,
    created_at: &'a str,
    updated_at: &'a str,
    archived_at: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct EnvironmentConfig {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `POST /environments`: `{"name": …, "config": {"type": "self_hosted" | "cloud"}}`.
pub(crate) async fn create(State(shared): State<Arc<Shared>>, body: Body) -> Handled {
    let body: Value = parse_json(&read_body(body).await?)?
        .ok_or_else(|| ApiError::bad_request("a JSON body is required".to_owned(), None))?;
    let name = match body.get("name") {
        Some(Value::String(name)) if !name.is_empty() && name.len() <= 256 => name.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "name must be a string of 1 to 256 bytes".to_owned(),
                Some("name"),
            ))
        }
    };
    let kind = match body.get("config").map(|config| config.get("type")) {
        None | Some(Some(Value::Null)) => EnvironmentKind::SelfHosted,
        Some(Some(Value::String(kind))) if kind == "self_hosted" => EnvironmentKind::SelfHosted,
        Some(Some(Value::String(kind))) if kind == "cloud" => EnvironmentKind::Cloud,
        Some(_) => {
            return Err(ApiError::bad_request(
                "config.type must be \"self_hosted\" or \"cloud\"".to_owned(),
                Some("config"),
            ))
        }
    };
    let (id, now) = shared.submit.register_environment(kind).await?;
    let created_at = now.to_rfc3339();
    let environment = EnvironmentObject {
        id: id.to_string(),
        kind: "environment",
        name,
        config: EnvironmentConfig {
            kind: kind.as_str(),
        },
        metadata: serde_json::Map::new(),
        description: None,
        created_at: created_at.as_str(),
        updated_at: created_at.as_str(),
        archived_at: None,
    };
    tracing::info!(environment_id = %id, kind = %kind.as_str(), "environment created");
    Ok(json(StatusCode::OK, &environment))
}
