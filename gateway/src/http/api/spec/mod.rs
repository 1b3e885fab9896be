//! The published OpenAPI document: poem-openapi's, made precise.
//!
//! poem-openapi derives paths, parameters and schemas from the code, but (OpenAPI 3.0, as it
//! emits) it cannot say what the types and handlers know: that an optional field is `null`
//! when absent, which values a text field takes (the domain's closed sets: statuses,
//! providers, event types), bounds, formats, examples, which errors each operation can really
//! answer, the headers on every answer, that bodies refuse unknown fields, and what the
//! webhooks we send look like. This module adds exactly that, from the same constants the
//! code checks against, so the document cannot promise a value the code refuses.
//! Schemathesis and the generated clients in CI hold it to what the server does.

use std::sync::LazyLock;

mod components;
mod operations;
mod schemas;

use components::*;
use operations::*;
use schemas::*;

use serde_json::{Value, json};

/// The refined document, as JSON.
pub fn document(poem_spec: &str) -> Value {
    let mut doc: Value = serde_json::from_str(poem_spec).unwrap_or_else(|_| json!({}));
    doc["info"]["contact"] = json!({
        "name": "Payrail",
        "url": "https://github.com/payrail/payrail",
    });
    doc["info"]["license"] = json!({
        "name": env!("CARGO_PKG_LICENSE"),
        "url": concat!("https://spdx.org/licenses/", env!("CARGO_PKG_LICENSE"), ".html"),
    });
    add_components(&mut doc);
    add_plain_routes(&mut doc);
    plain_enum_refs(&mut doc);
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (name, schema) in schemas.iter_mut() {
            refine_schema(name, schema);
        }
    }
    refuse_unknown_fields(&mut doc);
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            if let Some(ops) = item.as_object_mut() {
                for (_, op) in ops.iter_mut() {
                    refine_operation(path, op);
                }
            }
        }
    }
    doc["x-webhooks"] = webhooks();
    // Webhooks carry no credentials of the merchant's: they are signed (see each one's headers).
    if let Some(hooks) = doc["x-webhooks"].as_object_mut() {
        for op in hooks.values_mut().filter_map(|item| item.get_mut("post")) {
            op["security"] = json!([]);
        }
    }
    doc
}

/// The methods each path template answers, for the `Allow` header of a 405.
static METHODS: LazyLock<Vec<(Vec<String>, Vec<String>)>> = LazyLock::new(|| {
    let doc = document(&crate::http::api::service("http://127.0.0.1").spec());
    doc["paths"]
        .as_object()
        .map(|paths| {
            paths
                .iter()
                .map(|(path, item)| {
                    let segments = path.split('/').map(str::to_string).collect();
                    let methods = item
                        .as_object()
                        .map(|o| o.keys().map(|m| m.to_uppercase()).collect())
                        .unwrap_or_default();
                    (segments, methods)
                })
                .collect()
        })
        .unwrap_or_default()
});

/// The methods a request path answers (`GET, POST`), if it is one of the API's paths.
pub fn allowed_methods(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    METHODS.iter().find_map(|(template, methods)| {
        let matches = template.len() == segments.len()
            && template
                .iter()
                .zip(&segments)
                .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()));
        matches.then(|| methods.join(", "))
    })
}
