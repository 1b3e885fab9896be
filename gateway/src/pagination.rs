//! Cursor pagination over time-ordered ids, shared by every list.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};

use crate::error::ValidationError;

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
    ) -> Result<Page, ValidationError> {
        let limit = match limit {
            None => 10,
            Some(n @ 1..=100) => n as u64,
            Some(_) => {
                return Err(ValidationError::new(
                    "limit",
                    "limit_invalid",
                    "limit must be between 1 and 100.",
                ));
            }
        };
        if starting_after.is_some() && ending_before.is_some() {
            return Err(ValidationError::new(
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
