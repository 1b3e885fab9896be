//! The `provider_events` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// Every inbound provider webhook, unique per `(provider, provider_event_id)`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::ProviderEventId,
    pub provider: String,
    pub provider_event_id: String,
    pub event_type: String,
    pub payment_id: Option<crate::ids::PaymentId>,
    /// `applied`, `ignored` (e.g. a late event for a final payment) or `unknown_type`.
    pub outcome: crate::status::ProviderEventOutcome,
    pub raw_body: String,
    /// The headers that matter for audit (signature, content type), as JSON.
    pub headers: Option<String>,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
