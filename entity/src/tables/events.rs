//! The `events` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// The merchant-visible event log, and the outbox: `published_at` is set once the bus confirmed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::EventId,
    pub merchant_id: crate::ids::MerchantId,
    /// Test (`false`) or live: objects of one mode are invisible to keys of the other.
    pub livemode: bool,
    pub event_type: String,
    pub payment_id: Option<crate::ids::PaymentId>,
    /// The object as it was when the event happened.
    pub data: Json,
    pub request_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub published_at: Option<DateTimeUtc>,
    /// Its writer publishes it right after the commit (a new payment's first event); the relay
    /// takes it over only once it is older than the relay's grace.
    pub writer_publishes: bool,
    /// The W3C trace context of the work that caused it (when traced), carried to the bus,
    /// the worker and every delivery attempt.
    pub traceparent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
