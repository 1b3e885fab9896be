//! The gateway's logic. Services take a connection or a transaction, so one transaction can
//! span several steps (a payment, its event and its idempotency record commit together).

pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod idempotency;
pub mod logs;
pub mod merchants;
pub mod payments;
pub mod provider_events;
pub mod refunds;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Cursor pagination over time-ordered ids, newest first (Stripe's `limit`,
/// `starting_after`, `ending_before`).
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: u64,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
}

impl Page {
    pub fn new(
        limit: Option<i64>,
        starting_after: Option<String>,
        ending_before: Option<String>,
    ) -> Result<Page, ApiError> {
        let limit = match limit {
            None => 10,
            Some(n @ 1..=100) => n as u64,
            Some(_) => {
                return Err(ApiError::invalid(
                    "limit",
                    "limit_invalid",
                    "limit must be between 1 and 100.",
                ));
            }
        };
        if starting_after.is_some() && ending_before.is_some() {
            return Err(ApiError::invalid(
                "starting_after",
                "parameter_conflict",
                "Use starting_after or ending_before, not both.",
            ));
        }
        Ok(Page {
            limit,
            starting_after,
            ending_before,
        })
    }

    /// Runs `select` under this page; returns the rows newest first and whether more exist.
    pub async fn fetch<E, C>(
        &self,
        db: &C,
        select: Select<E>,
        id: E::Column,
    ) -> Result<(Vec<E::Model>, bool), DbErr>
    where
        E: EntityTrait,
        C: ConnectionTrait,
    {
        let mut rows = if let Some(before) = &self.ending_before {
            let mut rows = select
                .filter(id.gt(before.as_str()))
                .order_by_asc(id)
                .limit(self.limit + 1)
                .all(db)
                .await?;
            let more = rows.len() as u64 > self.limit;
            rows.truncate(self.limit as usize);
            rows.reverse();
            return Ok((rows, more));
        } else if let Some(after) = &self.starting_after {
            select
                .filter(id.lt(after.as_str()))
                .order_by_desc(id)
                .limit(self.limit + 1)
                .all(db)
                .await?
        } else {
            select
                .order_by_desc(id)
                .limit(self.limit + 1)
                .all(db)
                .await?
        };
        let more = rows.len() as u64 > self.limit;
        rows.truncate(self.limit as usize);
        Ok((rows, more))
    }
}
