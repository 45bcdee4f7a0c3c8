//! An environment's keys (docs/contract.md §10): create (the key shown once), list (without
//! keys), revoke. The key is minted and hashed here; the table only ever sees its digest.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
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
    Ok(json(
        StatusCode::OK,
        &KeyObject {
            key: Some(&key),
            ..KeyObject::of(&environment, &created)
        },
    ))
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
    let data: Vec<KeyObject<'_>> = record
        .keys
        .iter()
        .map(|key| KeyObject::of(&record.id, key))
        .collect();
    let first_id = data.first().map(|key| key.id.clone());
    let last_id = data.last().map(|key| key.id.clone());
    Ok(json(
        StatusCode::OK,
        &KeyList {
            data,
            first_id,
            last_id,
            // An environment holds at most 64 keys: one page holds them all.
            has_more: false,
            next_page: None,
        },
    ))
}

/// A list page of keys, in the shape of every list page.
#[derive(Serialize)]
struct KeyList<'a> {
    data: Vec<KeyObject<'a>>,
    first_id: Option<String>,
    last_id: Option<String>,
    has_more: bool,
    next_page: Option<String>,
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

/// An `environment_key` object, fields in the documented order; `key` only on creation.
#[derive(Serialize)]
struct KeyObject<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    environment_id: String,
    name: Option<&'a str>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

impl<'a> KeyObject<'a> {
    fn of(environment: &EnvironmentId, key: &'a EnvironmentKey) -> Self {
        Self {
            id: key.id.to_string(),
            kind: "environment_key",
            environment_id: environment.to_string(),
            name: key.name.as_deref(),
            created_at: key.created_at.to_rfc3339().to_string(),
            key: None,
        }
    }
}
