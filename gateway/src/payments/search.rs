//! Finding payments as a person does: the dashboard's search box, filters, counted pages and
//! CSV export. A search is parsed once ([`PaymentSearch::parse`]: bad input is refused with
//! the field's name, never ignored) and applied as one SQL condition, so a page, its count and
//! an export of 100,000 rows (read in keyset pages, never all at once) agree.
//!
//! The search box takes, by its shape: a payment id (`pay_…`), a customer's email (has `@`),
//! an amount in major units (`10.50`; 4 digits also match a card's last 4), or else the start
//! of a reference.

use entity::ids::{PaymentId, Scope};
use entity::money::{Currency, parse_major_units};
use entity::payment_status::PaymentStatus;
use entity::payments;
use entity::status::Provider;
use sea_orm::sea_query::{Condition, Expr, ExprTrait as _, LikeExpr};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter};

use crate::core::pagination::{CreatedRange, Page};

/// How a payment was paid, as a filter: a card taken here, or the provider's own checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Card,
    ProviderCheckout,
}

impl Method {
    pub const ALL: &'static [Method] = &[Method::Card, Method::ProviderCheckout];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Card => "card",
            Method::ProviderCheckout => "provider_checkout",
        }
    }

    fn parse(text: &str) -> Option<Method> {
        Method::ALL.iter().copied().find(|m| m.as_str() == text)
    }
}

/// What the search box was given, by its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Id(PaymentId),
    Email(String),
    /// Major units as typed, matched in every currency's own units (and, for four digits, a
    /// card's last 4 too).
    Amount {
        typed: String,
        last4: Option<String>,
    },
    ReferencePrefix(String),
}

impl Lookup {
    fn parse(text: &str) -> Lookup {
        if let Some(id) = PaymentId::parse(text) {
            return Lookup::Id(id);
        }
        if text.contains('@') {
            return Lookup::Email(text.to_lowercase());
        }
        let numeric = !text.is_empty()
            && text.chars().all(|c| c.is_ascii_digit() || c == '.')
            && text.chars().filter(|c| *c == '.').count() <= 1;
        if numeric {
            let last4 = (text.len() == 4 && !text.contains('.')).then(|| text.to_string());
            return Lookup::Amount {
                typed: text.to_string(),
                last4,
            };
        }
        Lookup::ReferencePrefix(text.to_string())
    }
}

/// One search: every field optional, all of them at once.
#[derive(Debug, Clone, Default)]
pub struct PaymentSearch {
    pub lookup: Option<Lookup>,
    pub status: Option<PaymentStatus>,
    pub currency: Option<Currency>,
    pub provider: Option<Provider>,
    pub method: Option<Method>,
    pub created: CreatedRange,
}

/// The search as typed (query-string fields; empty means "any").
#[derive(Debug, Default, serde::Deserialize)]
pub struct SearchForm {
    pub q: Option<String>,
    pub status: Option<String>,
    pub currency: Option<String>,
    pub provider: Option<String>,
    pub method: Option<String>,
    /// Dates (`2026-12-01`) or RFC 3339 times; `to` is inclusive of its whole day.
    pub from: Option<String>,
    pub to: Option<String>,
}

fn given(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A date as the start (or, with `end`, the end) of its day in UTC; or an RFC 3339 time.
fn instant(text: &str, end: bool) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let time = if end {
        day.and_hms_milli_opt(23, 59, 59, 999)?
    } else {
        day.and_hms_opt(0, 0, 0)?
    };
    Some(time.and_utc())
}

impl PaymentSearch {
    /// Parses what was typed, or says which field is wrong and why.
    pub fn parse(form: &SearchForm) -> Result<PaymentSearch, String> {
        let status = given(&form.status)
            .map(|s| PaymentStatus::parse(s).ok_or(format!("Unknown status {s:?}.")))
            .transpose()?;
        let currency = given(&form.currency)
            .map(|c| Currency::parse(c).ok_or(format!("Unknown currency {c:?}.")))
            .transpose()?;
        let provider = given(&form.provider)
            .map(|p| {
                Provider::ALL
                    .iter()
                    .copied()
                    .find(|known| known.as_str() == p)
                    .ok_or(format!("Unknown provider {p:?}."))
            })
            .transpose()?;
        let method = given(&form.method)
            .map(|m| Method::parse(m).ok_or(format!("Unknown payment method {m:?}.")))
            .transpose()?;
        let bound = |field: &Option<String>, end: bool, name: &str| {
            given(field)
                .map(|v| {
                    instant(v, end).ok_or(format!(
                        "{name} must be a date (2026-12-01) or an RFC 3339 time, not {v:?}."
                    ))
                })
                .transpose()
        };
        let created = CreatedRange {
            gte: bound(&form.from, false, "From")?,
            lte: bound(&form.to, true, "To")?,
        };
        if let (Some(from), Some(to)) = (created.gte, created.lte)
            && from > to
        {
            return Err("From must not be after To.".into());
        }
        let mut lookup = given(&form.q).map(Lookup::parse);
        // Digits that are no amount in any currency (`1.23456`) may still start a reference.
        if let Some(Lookup::Amount { typed, last4: None }) = &lookup
            && Currency::codes().all(|c| {
                Currency::parse(c).is_none_or(|cur| parse_major_units(typed, cur).is_err())
            })
        {
            lookup = Some(Lookup::ReferencePrefix(typed.clone()));
        }
        Ok(PaymentSearch {
            lookup,
            status,
            currency,
            provider,
            method,
            created,
        })
    }

    /// The whole search as one condition on `payments` (within `scope`).
    fn condition(&self, scope: &Scope) -> Condition {
        let mut all = Condition::all()
            .add(payments::Column::MerchantId.eq(scope.merchant_id.clone()))
            .add(payments::Column::Livemode.eq(scope.livemode));
        if let Some(s) = self.status {
            all = all.add(payments::Column::Status.eq(s));
        }
        if let Some(c) = self.currency {
            all = all.add(payments::Column::Currency.eq(c.code()));
        }
        if let Some(p) = self.provider {
            all = all.add(payments::Column::Provider.eq(p));
        }
        match self.method {
            Some(Method::Card) => all = all.add(payments::Column::PaymentMethod.is_not_null()),
            Some(Method::ProviderCheckout) => {
                all = all.add(payments::Column::PaymentMethod.is_null())
            }
            None => {}
        }
        if let Some(gte) = self.created.gte {
            all = all.add(payments::Column::CreatedAt.gte(gte));
        }
        if let Some(lte) = self.created.lte {
            all = all.add(payments::Column::CreatedAt.lte(lte));
        }
        if let Some(lookup) = &self.lookup {
            all = all.add(lookup_condition(lookup, self.currency));
        }
        all
    }

    /// One page of the search, newest first, and whether there are more on its far side.
    pub async fn page<C: ConnectionTrait>(
        &self,
        db: &C,
        scope: &Scope,
        page: &Page,
    ) -> Result<(Vec<payments::Model>, bool), DbErr> {
        let select = payments::Entity::find().filter(self.condition(scope));
        page.fetch(db, select, payments::Column::Id).await
    }

    /// How many payments the search finds.
    pub async fn count<C: ConnectionTrait>(&self, db: &C, scope: &Scope) -> Result<u64, DbErr> {
        payments::Entity::find()
            .filter(self.condition(scope))
            .count(db)
            .await
    }
}

// Both PostgreSQL and SQLite (3.38+) read a JSON field with `->>`.
fn lookup_condition(lookup: &Lookup, currency: Option<Currency>) -> Condition {
    match lookup {
        Lookup::Id(id) => Condition::all().add(payments::Column::Id.eq(id.clone())),
        Lookup::Email(email) => {
            Condition::all().add(Expr::cust("lower(customer ->> 'email')").eq(email.clone()))
        }
        Lookup::ReferencePrefix(prefix) => {
            let escaped = prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            Condition::all().add(
                Expr::col(payments::Column::Reference)
                    .like(LikeExpr::new(format!("{escaped}%")).escape('\\')),
            )
        }
        Lookup::Amount { typed, last4 } => {
            // The same typed amount is different minor units in EUR (×100), XAF (×1) and KWD
            // (×1000): one branch per currency it parses in (or just the filtered one).
            let mut any = Condition::any();
            let currencies: Vec<Currency> = match currency {
                Some(c) => vec![c],
                None => Currency::codes().filter_map(Currency::parse).collect(),
            };
            let mut by_minor: std::collections::BTreeMap<i64, Vec<&str>> = Default::default();
            for c in currencies {
                if let Ok(minor) = parse_major_units(typed, c) {
                    by_minor.entry(minor).or_default().push(c.code());
                }
            }
            for (minor, codes) in by_minor {
                any = any.add(
                    Condition::all()
                        .add(payments::Column::Currency.is_in(codes))
                        .add(payments::Column::Amount.eq(minor)),
                );
            }
            if let Some(last4) = last4 {
                any = any.add(Expr::cust("payment_method -> 'card' ->> 'last4'").eq(last4.clone()));
            }
            any
        }
    }
}
