//! A reconciliation item as the API shows it.

use entity::event::rfc3339;
use entity::reconciliation_items;
use poem_openapi::Object;
use serde::{Deserialize, Serialize};

/// A difference between Payrail's ledger and a provider's report, about one payment, refund
/// or payout.
#[derive(Object, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationItem {
    pub id: String,
    pub object: crate::core::object_names::ReconciliationItemName,
    pub livemode: bool,
    pub provider: entity::status::Provider,
    pub kind: entity::status::ReconciliationKind,
    /// The payment (`pay_…`), refund or payout it is about.
    pub object_id: String,
    pub provider_reference: Option<String>,
    /// What Payrail's ledger says.
    pub expected: String,
    /// What the provider reports.
    pub reported: String,
    /// `open`; `matched` once a later run found no difference; `resolved` by an operator.
    pub status: entity::status::ReconciliationStatus,
    /// The operator's note, once resolved.
    pub resolution: Option<String>,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub resolved_at: Option<String>,
}

impl From<&reconciliation_items::Model> for ReconciliationItem {
    fn from(i: &reconciliation_items::Model) -> ReconciliationItem {
        ReconciliationItem {
            id: i.id.to_string(),
            object: crate::core::object_names::ReconciliationItemName::default(),
            livemode: i.livemode,
            provider: i.provider,
            kind: i.kind,
            object_id: i.object_id.clone(),
            provider_reference: i.provider_reference.clone(),
            expected: i.expected.clone(),
            reported: i.reported.clone(),
            status: i.status,
            resolution: i.resolution.clone(),
            first_seen_at: rfc3339(i.first_seen_at),
            last_seen_at: rfc3339(i.last_seen_at),
            resolved_at: i.resolved_at.map(rfc3339),
        }
    }
}

#[derive(Object, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationItemList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<ReconciliationItem>,
    pub has_more: bool,
}
