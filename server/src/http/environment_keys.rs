//! An environment's keys (docs/contract.md §10): create (the key shown once), list (without
//! keys), revoke. The key is minted and hashed here; the table only ever sees its digest.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json as value, Value};
use worklease::{EnvironmentId, EnvironmentKey};

use super::error::{json, ApiError};
use super::extract::{parse_json, read_body, Ids};
use crate::access::environment_key;
use crate::app::Shared;

type Handled = Result<Response, ApiError>;

/// `POST /environments/{id}/keys`: `{name?}`. Answers the key's object with `key`, the only
/// time the key is shown.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
    body: Body,
) -> Handled {
    let ids = Ids::of(ids)?;
    let body: Option<Value> = parse_json(&read_body(body).await?)?;
    let name = match body.as_ref().and_then(|body| body.get("name")) {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "name must be a string of 1 to 256 characters".to_owned(),
                Some("name"),
            ))
        }
    };
    // The key names its environment, so it is minted for the id the environment has; an id
    // that is not one is answered as the table answers an unknown environment.
    let environment = shared
        .submit
        .retrieve_environment(ids.environment())
        .await?
        .id;
    let (key, digest) = environment_key::mint(&environment).map_err(ApiError::Unavailable)?;
    let created = shared
        .submit
        .create_environment_key(ids.environment(), name, digest)
        .await?;
    if created.digest != digest {
        // A replayed forward answered from the record of an earlier attempt, whose key only
        // that attempt saw: this key was never stored.
        return Err(ApiError::own(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!(
                "the key was created by an earlier attempt of this request whose answer was \
                 lost; revoke {} and create another",
                created.id
            ),
        ));
    }
    tracing::info!(environment_id = %environment, key_id = %created.id, "environment key created");
    let mut object = render(&environment, &created);
    object["key"] = Value::String(key);
    Ok(json(StatusCode::OK, &object))
}

/// `GET /environments/{id}/keys`: every key, ascending id, without the keys themselves.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
) -> Handled {
    let ids = Ids::of(ids)?;
    let record = shared
        .submit
        .retrieve_environment(ids.environment())
        .await?;
    let data: Vec<Value> = record
        .keys
        .iter()
        .map(|key| render(&record.id, key))
        .collect();
    let first_id = data.first().map(|key| key["id"].clone());
    let last_id = data.last().map(|key| key["id"].clone());
    Ok(json(
        StatusCode::OK,
        &value!({
            "data": data,
            "first_id": first_id,
            "last_id": last_id,
            "has_more": false,
            "next_page": null,
        }),
    ))
}

/// `DELETE /environments/{id}/keys/{key_id}`.
pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    ids: Result<RawPathParams, RawPathParamsRejection>,
) -> Handled {
    let ids = Ids::of(ids)?;
    let revoked = shared
        .submit
        .revoke_environment_key(ids.environment(), ids.key())
        .await?;
    tracing::info!(environment_id = %ids.environment(), key_id = %revoked, "environment key revoked");
    Ok(json(
        StatusCode::OK,
        &value!({"id": revoked.to_string(), "type": "environment_key_deleted"}),
    ))
}

fn render(environment: &EnvironmentId, key: &EnvironmentKey) -> Value {
    value!({
        "id": key.id.to_string(),
        "type": "environment_key",
        "environment_id": environment.to_string(),
        "name": key.name,
        "created_at": key.created_at.to_rfc3339().to_string(),
    })
}
