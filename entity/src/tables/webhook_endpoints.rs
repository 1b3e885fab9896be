//! The `webhook_endpoints` table's sea-orm entity.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::EndpointId,
    pub merchant_id: crate::ids::MerchantId,
    pub url: String,
    pub description: Option<String>,
    /// JSON array of event type names, or `["*"]`.
    pub enabled_events: Json,
    pub secret: String,
    /// `enabled` or `disabled`.
    pub status: crate::status::EndpointStatus,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl Model {
    pub fn enabled_event_names(&self) -> Vec<String> {
        serde_json::from_value(self.enabled_events.clone()).unwrap_or_default()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
