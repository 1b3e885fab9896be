//! The `webhook_attempts` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// One HTTP call of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::AttemptId,
    pub delivery_id: crate::ids::DeliveryId,
    pub merchant_id: crate::ids::MerchantId,
    /// Test (`false`) or live, as its delivery.
    pub livemode: bool,
    pub attempt_number: i32,
    pub http_status: Option<i32>,
    pub error_message: Option<String>,
    /// Why it failed: `timeout`, `connect`, `tls`, `dns`, `http_3xx`, `http_4xx`, `http_5xx`
    /// or `blocked`; none for a success.
    pub error_class: Option<String>,
    /// The first few KiB of the answer.
    pub response_body: Option<String>,
    /// The headers sent, in order, as a JSON array of `[name, value]` pairs; none when the
    /// request was never made (refused before it, or an outcome the worker never learned).
    pub request_headers: Option<String>,
    pub duration_ms: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Headers as the `request_headers` column keeps them; none for none.
pub fn headers_text(headers: &[(String, String)]) -> Option<String> {
    (!headers.is_empty())
        .then(|| serde_json::to_string(headers).ok())
        .flatten()
}

impl Model {
    /// The headers this attempt sent, in order (none if it sent none, or they were not kept).
    pub fn sent_headers(&self) -> Vec<(String, String)> {
        self.request_headers
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }
}
