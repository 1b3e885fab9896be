//! Cursor pagination over time-ordered ids, shared by every list.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};

use crate::core::error::ValidationError;

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
        for (param, cursor) in [
            ("starting_after", &starting_after),
            ("ending_before", &ending_before),
        ] {
            if cursor
                .as_deref()
                .is_some_and(|c| !entity::ids::looks_like_id(c))
            {
                return Err(ValidationError::new(
                    param,
                    "cursor_invalid",
                    format!("{param} must be the id of an object in the list."),
                ));
            }
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

/// Where the pages either side of a fetched page start: the cursors of its links.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Neighbours {
    /// `ending_before` for the newer page, when there is one.
    pub newer: Option<String>,
    /// `starting_after` for the older page, when there is one.
    pub older: Option<String>,
}

impl Page {
    /// The pages either side of the one [`Page::fetch`] returned (`more`, and its first and
    /// last ids, newest first). Going back (`ending_before`) there are older ones by
    /// definition; going forward (`starting_after`), newer ones.
    pub fn neighbours(&self, more: bool, first: Option<&str>, last: Option<&str>) -> Neighbours {
        let (newer, older) = if self.ending_before.is_some() {
            (more, true)
        } else {
            (self.starting_after.is_some(), more)
        };
        Neighbours {
            newer: first.filter(|_| newer).map(str::to_string),
            older: last.filter(|_| older).map(str::to_string),
        }
    }
}

/// Stripe's `created[gte]` / `created[lte]` on a list: an inclusive window on `created_at`.
/// Each bound is a Unix timestamp in seconds or an RFC 3339 time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreatedRange {
    pub gte: Option<chrono::DateTime<chrono::Utc>>,
    pub lte: Option<chrono::DateTime<chrono::Utc>>,
}

impl CreatedRange {
    pub fn parse(gte: Option<&str>, lte: Option<&str>) -> Result<CreatedRange, ValidationError> {
        let range = CreatedRange {
            gte: gte.map(|v| instant("created[gte]", v)).transpose()?,
            lte: lte.map(|v| instant("created[lte]", v)).transpose()?,
        };
        if let (Some(gte), Some(lte)) = (range.gte, range.lte)
            && gte > lte
        {
            return Err(ValidationError::new(
                "created[gte]",
                "created_range_invalid",
                "created[gte] must not be after created[lte].",
            ));
        }
        Ok(range)
    }

    /// `select` narrowed to rows whose `column` lies in the window.
    pub fn apply<E: EntityTrait>(&self, mut select: Select<E>, column: E::Column) -> Select<E> {
        if let Some(gte) = self.gte {
            select = select.filter(column.gte(gte));
        }
        if let Some(lte) = self.lte {
            select = select.filter(column.lte(lte));
        }
        select
    }
}

/// The latest instant a filter may name: the end of year 9999 (what both databases store).
const LATEST_SECONDS: i64 = 253_402_300_799;

fn instant(param: &str, value: &str) -> Result<chrono::DateTime<chrono::Utc>, ValidationError> {
    let parsed = match value.parse::<i64>() {
        Ok(seconds) => chrono::DateTime::from_timestamp(seconds, 0),
        Err(_) => chrono::DateTime::parse_from_rfc3339(value)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc)),
    };
    // Before 1970 or after 9999 is no time a Payrail object has (and PostgreSQL refuses
    // some of them): a mistake to name, not a query to run.
    let parsed = parsed.filter(|t| (0..=LATEST_SECONDS).contains(&t.timestamp()));
    parsed.ok_or_else(|| {
        ValidationError::new(
            param,
            "timestamp_invalid",
            format!(
                "{param} must be a Unix timestamp in seconds or an RFC 3339 time between 1970 and 9999, not '{value}'."
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_of_any_objects_range_are_refused() {
        for bad in [
            "-300000000000",
            "-1",
            "253402300800",
            "99999999999999",
            "0001-01-01T00:00:00Z",
        ] {
            assert_eq!(
                CreatedRange::parse(Some(bad), None).unwrap_err().code,
                "timestamp_invalid",
                "{bad}"
            );
        }
        assert!(CreatedRange::parse(Some("0"), Some("253402300799")).is_ok());
    }

    #[test]
    fn created_bounds_take_unix_seconds_or_rfc3339_and_must_be_in_order() {
        let r = CreatedRange::parse(Some("1700000000"), Some("2023-11-15T00:00:00Z")).expect("ok");
        assert_eq!(r.gte.map(|t| t.timestamp()), Some(1_700_000_000));
        assert_eq!(r.lte.map(|t| t.timestamp()), Some(1_700_006_400));
        assert_eq!(
            CreatedRange::parse(Some("yesterday"), None)
                .unwrap_err()
                .param,
            "created[gte]"
        );
        assert_eq!(
            CreatedRange::parse(Some("1700000001"), Some("1700000000"))
                .unwrap_err()
                .code,
            "created_range_invalid"
        );
        assert_eq!(
            CreatedRange::parse(None, None).expect("ok"),
            CreatedRange::default()
        );
    }
}
