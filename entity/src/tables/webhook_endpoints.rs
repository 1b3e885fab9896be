//! The `webhook_endpoints` table's sea-orm entity.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::EndpointId,
    pub merchant_id: crate::ids::MerchantId,
    /// Test (`false`) or live: an endpoint receives only its own mode's events.
    pub livemode: bool,
    pub url: String,
    pub description: Option<String>,
    /// JSON array of event type names, or `["*"]`.
    pub enabled_events: Json,
    pub secret: String,
    /// `enabled` or `disabled`.
    pub status: crate::status::EndpointStatus,
    /// Requests this endpoint may have in flight from one worker (the default when unset).
    pub max_concurrency: Option<i32>,
    /// Requests per second across all workers, if limited.
    pub rate_limit: Option<i32>,
    /// Why it is disabled: `gone` (the receiver answered 410), `failing` (no success for
    /// `PAYRAIL_WEBHOOK_DISABLE_AFTER`) or `manual`.
    pub disabled_reason: Option<String>,
    /// The secret before the last rotation: it keeps signing until `previous_secret_expires_at`.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTimeUtc>,
    /// When the current run of failed attempts began (none since the last success).
    pub failing_since: Option<DateTimeUtc>,
    pub consecutive_failures: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl Model {
    pub fn enabled_event_names(&self) -> Vec<String> {
        self.enabled_event_types().map(String::from).collect()
    }

    /// The event types this endpoint subscribed to, read in place: the fan-out asks once per
    /// event and endpoint, and a copy of the list each time showed in the worker's allocations.
    pub fn enabled_event_types(&self) -> impl Iterator<Item = &str> {
        self.enabled_events
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
    }

    /// The secrets that sign a request sent at `now`: the current one, and the previous one
    /// while a rotation's overlap lasts.
    pub fn signing_secrets(&self, now: DateTimeUtc) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) =
            (&self.previous_secret, self.previous_secret_expires_at)
            && until > now
        {
            secrets.push(previous);
        }
        secrets
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
