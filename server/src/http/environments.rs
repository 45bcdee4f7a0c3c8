//! The environment endpoints (docs/contract.md §9), shaped as the official SDK's
//! `client.beta.environments` expects: create, retrieve, update, list, archive, delete.
//!
//! Bodies are read as JSON values so that an omitted field and an explicit `null` can differ
//! (`description: null` clears it); unknown fields are ignored. The crate checks every limit
//! and answers the typed errors; this module only turns JSON into its request types and its
//! records back into JSON (`config` is kept as the JSON text the client sent).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{Map, Value};
use worklease::json::{Environment, EnvironmentDeleted, EnvironmentList};
use worklease::{
    EnvironmentKind, EnvironmentListRequest, EnvironmentPatch, EnvironmentRecord, EnvironmentScope,
    Metadata, MetadataPatch, NewEnvironment,
};

use super::error::{json, ApiError};
use super::extract::{parse_json, read_body, Ids, Query};
use crate::app::Shared;

type Handled = Result<Response, ApiError>;

/// `POST /environments`: `{name, config?, description?, metadata?, scope?}`.
pub(crate) async fn create(State(shared): State<Arc<Shared>>, body: Body) -> Handled {
    let body = object(body).await?;
    let name = match body.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(bad("name must be a string of 1 to 256 characters", "name")),
    };
    let (kind, config) = match body.get("config") {
        None | Some(Value::Null) => (EnvironmentKind::SelfHosted, None),
        Some(config) => {
            let kind = config_kind(config)?;
            (kind, Some(config.to_string()))
        }
    };
    let new = NewEnvironment {
        name,
        kind,
        config,
        description: optional_text(&body, "description")?.flatten(),
        metadata: metadata(&body)?,
        scope: scope(&body)?.flatten(),
    };
    let record = shared.submit.create_environment(new).await?;
    tracing::info!(environment_id = %record.id, kind = %record.kind.as_str(), "environment created");
    render(&record)
}

/// `GET /environments/{environment_id}`.
pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
) -> Handled {
    let ids = Ids::of(ids)?;
    let record = shared
        .submit
        .retrieve_environment(ids.environment())
        .await?;
    render(&record)
}

/// `POST /environments/{environment_id}`: `{name?, description?, metadata?, config?, scope?}`.
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
    body: Body,
) -> Handled {
    let ids = Ids::of(ids)?;
    let body = object(body).await?;
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(bad("name must be a string of 1 to 256 characters", "name")),
    };
    let config = match body.get("config") {
        None | Some(Value::Null) => None,
        Some(config) => Some((config_kind(config)?, config.to_string())),
    };
    let metadata = match body.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(entries)) => {
            let mut patch = MetadataPatch::new();
            for (key, value) in entries {
                let value = match value {
                    Value::Null => None,
                    Value::String(text) => Some(text.clone()),
                    _ => return Err(bad("metadata values must be strings or null", "metadata")),
                };
                patch.insert(key.clone(), value);
            }
            Some(patch)
        }
        Some(_) => return Err(bad("metadata must be an object", "metadata")),
    };
    let patch = EnvironmentPatch {
        name,
        description: optional_text(&body, "description")?,
        metadata,
        config,
        scope: scope(&body)?.flatten(),
    };
    let record = shared
        .submit
        .update_environment(ids.environment(), &patch)
        .await?;
    render(&record)
}

/// `GET /environments?limit=&page=&include_archived=`.
pub(crate) async fn list(State(shared): State<Arc<Shared>>, uri: Uri) -> Handled {
    let query = Query::parse(uri.query());
    let request = EnvironmentListRequest::parse(
        query.get("limit"),
        query.get("page"),
        query.get("include_archived"),
    )?;
    let page = shared.submit.list_environments(&request).await?;
    let configs: Vec<Value> = page.data.iter().map(config_value).collect();
    Ok(json(StatusCode::OK, &EnvironmentList(&page, &configs)))
}

/// `POST /environments/{environment_id}/archive`.
pub(crate) async fn archive(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
) -> Handled {
    let ids = Ids::of(ids)?;
    let record = shared.submit.archive_environment(ids.environment()).await?;
    tracing::info!(environment_id = %record.id, "environment archived");
    render(&record)
}

/// `DELETE /environments/{environment_id}`.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
) -> Handled {
    let ids = Ids::of(ids)?;
    let id = shared.submit.delete_environment(ids.environment()).await?;
    tracing::info!(environment_id = %id, "environment deleted");
    Ok(json(StatusCode::OK, &EnvironmentDeleted(&id)))
}

fn render(record: &EnvironmentRecord) -> Handled {
    Ok(json(
        StatusCode::OK,
        &Environment(record, config_value(record)),
    ))
}

/// The config as the client sent it; the table only ever holds JSON text this module wrote.
fn config_value(record: &EnvironmentRecord) -> Value {
    serde_json::from_str(&record.config).unwrap_or_else(|_| {
        let mut object = Map::new();
        object.insert("type".into(), Value::from(record.kind.as_str()));
        Value::Object(object)
    })
}

fn bad(message: &str, param: &'static str) -> ApiError {
    ApiError::bad_request(message.to_owned(), Some(param))
}

/// The body, which must be a JSON object.
async fn object(body: Body) -> Result<Map<String, Value>, ApiError> {
    match parse_json::<Value>(&read_body(body).await?)? {
        Some(Value::Object(object)) => Ok(object),
        _ => Err(ApiError::bad_request(
            "the body must be a JSON object".to_owned(),
            None,
        )),
    }
}

/// `config.type`, which must be `self_hosted` or `cloud`.
fn config_kind(config: &Value) -> Result<EnvironmentKind, ApiError> {
    match config.get("type").and_then(Value::as_str) {
        Some("self_hosted") => Ok(EnvironmentKind::SelfHosted),
        Some("cloud") => Ok(EnvironmentKind::Cloud),
        _ => Err(bad(
            "config must be an object whose type is \"self_hosted\" or \"cloud\"",
            "config",
        )),
    }
}

/// A field that is a string or null: `None` omitted, `Some(None)` null.
fn optional_text(
    body: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Option<String>>, ApiError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) => Ok(Some(Some(text.clone()))),
        Some(_) => Err(bad("must be a string or null", field)),
    }
}

fn scope(body: &Map<String, Value>) -> Result<Option<Option<EnvironmentScope>>, ApiError> {
    match optional_text(body, "scope")? {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(text)) => Ok(Some(Some(EnvironmentScope::parse(&text)?))),
    }
}

/// A create's metadata: an object of strings.
fn metadata(body: &Map<String, Value>) -> Result<Metadata, ApiError> {
    match body.get("metadata") {
        None | Some(Value::Null) => Ok(Metadata::new()),
        Some(Value::Object(entries)) => {
            let mut map = std::collections::BTreeMap::new();
            for (key, value) in entries {
                let Value::String(value) = value else {
                    return Err(bad("metadata values must be strings", "metadata"));
                };
                map.insert(key.clone(), value.clone());
            }
            Ok(Metadata::from_map(map)?)
        }
        Some(_) => Err(bad("metadata must be an object", "metadata")),
    }
}
