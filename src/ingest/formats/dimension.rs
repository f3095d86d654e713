//! Dimension exports: pages of `GET /api/v2/routing/queues`, `GET /api/v2/users` and
//! `GET /api/v2/routing/wrapupcodes` (`{"entities":[...], "selfUri": ...}`). Which export a
//! page is comes from its URIs (`selfUri`, `firstUri`, ...) or, without them, from the
//! entities' fields; each entity is one row of the latest export of its dimension.

use super::fields::{child, decode_items, id, integer, masked_text, object, required_id, text};
use super::tree::{Object, Value};
use super::tree_format::{Decoded, TreeFormat};
use crate::ingest::coerce::Rejection;
use crate::ingest::rows::{Cell, RecordRows};
use crate::model::LakeTable;

#[derive(Debug)]
pub struct DimensionExport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dimension {
    Queues,
    Users,
    WrapupCodes,
}

impl TreeFormat for DimensionExport {
    fn name(&self) -> &'static str {
        "dimension"
    }

    fn sniff(&self, top: &Object<'_>) -> bool {
        matches!(top.get("entities"), Some(Value::Array(_)))
    }

    fn decode<'v>(&self, record: &'v Value<'v>, each: &mut dyn FnMut(Decoded<'v>)) {
        let Some(Value::Array(items)) = record.get("entities") else { return };
        let page = page_dimension(record);
        decode_items(items, "entities", |item| {
            let dimension = match page.or_else(|| entity_dimension(item)) {
                Some(d) => d,
                None => {
                    return Err(Rejection::UnknownExport(
                        "the page has no selfUri naming routing/queues, users or routing/wrapupcodes, and the entity has none of their fields".into(),
                    ))
                }
            };
            entity(dimension, item)
        }, each)
    }
}

/// The export a page is, from the API path in any of its URIs.
fn page_dimension(page: &Value<'_>) -> Option<Dimension> {
    ["selfUri", "firstUri", "nextUri", "previousUri", "lastUri"].iter().find_map(|key| {
        let uri = page.get(key)?.as_str()?;
        let path = uri.split('?').next().unwrap_or(uri);
        if path.contains("/routing/queues") {
            Some(Dimension::Queues)
        } else if path.contains("/routing/wrapupcodes") {
            Some(Dimension::WrapupCodes)
        } else if path.contains("/users") {
            Some(Dimension::Users)
        } else {
            None
        }
    })
}

/// The export an entity belongs to, from its own `selfUri` or its fields.
fn entity_dimension(entity: &Value<'_>) -> Option<Dimension> {
    if let Some(found) = page_dimension(entity) {
        return Some(found);
    }
    let obj = entity.as_object()?;
    if ["email", "username", "presence", "routingStatus"].iter().any(|k| obj.contains_key(k)) {
        Some(Dimension::Users)
    } else if ["mediaSettings", "memberCount", "acwSettings", "queueFlow", "skillEvaluationMethod"].iter().any(|k| obj.contains_key(k)) {
        Some(Dimension::Queues)
    } else {
        None
    }
}

fn division_id<'v>(e: &'v Object) -> Result<Option<std::borrow::Cow<'v, str>>, Rejection> {
    child(e, "division", "division")?.map_or(Ok(None), |d| id(d, "id", "division.id"))
}

fn entity<'v>(dimension: Dimension, value: &'v Value<'v>) -> Result<RecordRows<'v>, Rejection> {
    let e = object(value, "entities[]")?;
    let mut rows = RecordRows::default();
    match dimension {
        Dimension::Queues => {
            let media = child(e, "mediaSettings", "mediaSettings")?;
            let target = |name: &str, field: &'static str| -> Result<Option<i64>, Rejection> {
                let Some(settings) = media.map(|m| child(m, name, field)).transpose()?.flatten() else { return Ok(None) };
                match child(settings, "serviceLevel", field)? {
                    Some(level) => integer(level, "durationMs", field),
                    None => Ok(None),
                }
            };
            rows.add(
                LakeTable::Queues,
                vec![
                    ("queue_id", Cell::Text(Some(required_id(e, "id", "id")?))),
                    ("queue_name", Cell::Text(masked_text(e, "name", "name")?)),
                    ("division_id", Cell::Text(division_id(e)?)),
                    ("service_level_call_ms", Cell::Int(target("call", "mediaSettings.call.serviceLevel.durationMs")?)),
                    ("service_level_callback_ms", Cell::Int(target("callback", "mediaSettings.callback.serviceLevel.durationMs")?)),
                    ("service_level_chat_ms", Cell::Int(target("chat", "mediaSettings.chat.serviceLevel.durationMs")?)),
                    ("service_level_email_ms", Cell::Int(target("email", "mediaSettings.email.serviceLevel.durationMs")?)),
                    ("service_level_message_ms", Cell::Int(target("message", "mediaSettings.message.serviceLevel.durationMs")?)),
                ],
            );
        }
        Dimension::Users => {
            let user_id = required_id(e, "id", "id")?;
            // The address is company data: kept as exported, in a table only auditors read.
            let email = text(e, "email", "email")?;
            rows.add(LakeTable::UserContacts, vec![("user_id", Cell::Text(Some(user_id.clone()))), ("email", Cell::Text(email))]);
            rows.add(
                LakeTable::Users,
                vec![
                    ("user_id", Cell::Text(Some(user_id))),
                    ("user_name", Cell::Text(masked_text(e, "name", "name")?)),
                    ("department", Cell::Text(masked_text(e, "department", "department")?)),
                    ("title", Cell::Text(masked_text(e, "title", "title")?)),
                    ("division_id", Cell::Text(division_id(e)?)),
                    ("state", Cell::Text(super::fields::enumeration(e, "state", "state")?)),
                ],
            );
        }
        Dimension::WrapupCodes => {
            rows.add(
                LakeTable::WrapupCodes,
                vec![
                    ("wrapup_code_id", Cell::Text(Some(required_id(e, "id", "id")?))),
                    ("wrapup_code_name", Cell::Text(masked_text(e, "name", "name")?)),
                    ("division_id", Cell::Text(division_id(e)?)),
                ],
            );
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_uri_or_the_fields_say_which_export_it_is() {
        let arena = bumpalo::Bump::new();
        let queues_text = serde_json::json!({"entities": [{"id": "q1", "name": "Billing"}], "selfUri": "/api/v2/routing/queues?pageNumber=1"}).to_string();
        let queues = crate::ingest::formats::tree::parse(queues_text.as_bytes(), None, &arena).unwrap();
        assert_eq!(page_dimension(&queues), Some(Dimension::Queues));
        let user_text = serde_json::json!({"id": "u1", "name": "Ann", "email": "ann@example.com"}).to_string();
        let user = crate::ingest::formats::tree::parse(user_text.as_bytes(), None, &arena).unwrap();
        assert_eq!(entity_dimension(&user), Some(Dimension::Users));
        let unknown_text = serde_json::json!({"entities": [{"id": "x", "name": "?"}]}).to_string();
        let unknown = crate::ingest::formats::tree::parse(unknown_text.as_bytes(), None, &arena).unwrap();
        let decoded = crate::ingest::formats::tree_format::decoded(&DimensionExport, &unknown);
        assert_eq!(decoded[0].outcome.as_ref().unwrap_err().code(), "unknown_export");
        assert_eq!(decoded[0].position.as_deref(), Some("entities[0]"));
    }
}
